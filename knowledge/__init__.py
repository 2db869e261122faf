"""Candor's knowledge base: loaders, chunking, embedders, Qdrant stores and retrieval.

This package imports nothing from ``bot/`` or ``handlers/``; what it needs
(token counter, OpenAI client, Slack client, store location) is handed in.
Typical use from the composition root::

    store = open_store(url=None, api_key=None, path="./data/qdrant", collection="candor")
    kb = KnowledgeBase(store, [SparseLexicalEmbedder()], count_tokens=count_tokens)
    await kb.add_paths(["./docs"], Scope.workspace())
    hits = await kb.search("how do I roll back?", scopes_for_channel("C123", channel_private=False))
    prompt_sources = format_sources(hits)

Importing this package loads no Qdrant engine; ``open_store`` does, lazily.
"""

from knowledge.chunking import Chunk, Chunker
from knowledge.documents import Document, Section
from knowledge.embedders import (
    Embedder,
    Embedding,
    EmbeddingError,
    MiniLMEmbedder,
    OpenAIEmbedder,
    SparseLexicalEmbedder,
    SparseVector,
)
from knowledge.loaders import (
    LoadResult,
    SkippedFile,
    UnsupportedFile,
    load_file,
    load_folder,
    load_paths,
    load_slack_channel,
    load_upload,
)
from knowledge.open_store import open_store
from knowledge.retriever import Hit, Retriever, SourceRef
from knowledge.scopes import AllowedScopes, Scope, ScopeError, scopes_for_channel, scopes_for_dm
from knowledge.service import (
    AddPathsResult,
    IngestProgress,
    IngestReport,
    KnowledgeBase,
    cited_indices,
    format_sources,
)
from knowledge.store import (
    CollectionSpec,
    EmbedderMismatch,
    SourceInfo,
    StoreError,
    VectorStore,
)
from knowledge.tokens import estimate_tokens

__all__ = [
    "AddPathsResult",
    "AllowedScopes",
    "Chunk",
    "Chunker",
    "CollectionSpec",
    "Document",
    "Embedder",
    "EmbedderMismatch",
    "Embedding",
    "EmbeddingError",
    "Hit",
    "IngestProgress",
    "IngestReport",
    "KnowledgeBase",
    "LoadResult",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "Retriever",
    "Scope",
    "ScopeError",
    "Section",
    "SkippedFile",
    "SourceInfo",
    "SourceRef",
    "SparseLexicalEmbedder",
    "SparseVector",
    "StoreError",
    "UnsupportedFile",
    "VectorStore",
    "cited_indices",
    "estimate_tokens",
    "format_sources",
    "load_file",
    "load_folder",
    "load_paths",
    "load_slack_channel",
    "load_upload",
    "open_store",
    "scopes_for_channel",
    "scopes_for_dm",
]
