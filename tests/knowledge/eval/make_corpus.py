"""Generate the evaluation corpus once: Markdown from Python standard-library docstrings.

Run from the repository root (`python tests/knowledge/eval/make_corpus.py`); the output
under `tests/knowledge/eval/stdlib/` is committed, so later Python versions changing their
docstrings do not move the numbers. One file per module: the module docstring, then one
`##` section per public function or class (signature + docstring) and one `###` section
per documented method. The Python language reference topics (pydoc_data) are not used.
A few sections are copied into a second file on purpose (near-duplicate chunks).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

MODULES = """abc argparse array base64 bisect calendar cmath codecs collections colorsys
contextlib copy csv dataclasses datetime decimal difflib enum fnmatch fractions functools
getopt getpass glob graphlib gzip hashlib heapq hmac html imaplib inspect ipaddress
itertools json keyword linecache locale logging math mimetypes operator os pathlib pickle
platform pprint queue random re sched secrets shelve shlex shutil signal smtplib socket
sqlite3 statistics string struct subprocess tempfile textwrap threading time timeit
tokenize unittest urllib.parse uuid warnings weakref zipfile zlib""".split()

MAX_DOC = 1500  # characters of one docstring kept
MAX_FILE = 24_000  # characters of one module file kept
OUT = Path(__file__).parent / "stdlib"

# (from module, section title prefix, into module): near-duplicate chunks across files
COPIES = [
    ("shutil", "copyfile", "os"),
    ("json", "dumps", "pickle"),
    ("hashlib", "", "hmac"),
]


def _sig(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc if len(doc) <= MAX_DOC else doc[:MAX_DOC].rsplit("\n", 1)[0] + "\n..."


def render(name: str) -> tuple[str, dict[str, str]]:
    mod = importlib.import_module(name)
    parts = [f"# {name}\n", _doc(mod) + "\n"]
    sections: dict[str, str] = {}
    public = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    for attr in sorted(set(public)):
        obj = getattr(mod, attr, None)
        if obj is None or inspect.ismodule(obj):
            continue
        if getattr(obj, "__module__", name) not in (name, f"_{name}", name.split(".")[0]):
            continue
        if inspect.isclass(obj):
            text = f"## class {attr}{_sig(obj)}\n\n{_doc(obj)}\n"
            for meth, fn in sorted(vars(obj).items()):
                if meth.startswith("_") or not callable(fn) or not inspect.getdoc(fn):
                    continue
                text += f"\n### {attr}.{meth}{_sig(fn)}\n\n{_doc(fn)}\n"
        elif callable(obj) and inspect.getdoc(obj):
            text = f"## {attr}{_sig(obj)}\n\n{_doc(obj)}\n"
        else:
            continue
        sections[attr] = text
        parts.append(text)
    body = "\n".join(parts)
    if len(body) > MAX_FILE:
        body = body[:MAX_FILE].rsplit("\n## ", 1)[0] + "\n"
    return body, sections


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rendered = {name: render(name) for name in MODULES}
    texts = {name: body for name, (body, _) in rendered.items()}
    for src, prefix, dst in COPIES:
        body, sections = rendered[src]
        if prefix:
            texts[dst] += "\n" + sections[prefix].replace("## ", f"## {src}.", 1)
        else:  # the module docstring
            texts[dst] += f"\n## About {src}\n\n" + _doc(importlib.import_module(src)) + "\n"
    for name, body in texts.items():
        (OUT / f"{name}.md").write_text(body.replace(sys.executable, "sys.executable"))


if __name__ == "__main__":
    main()
