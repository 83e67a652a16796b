"""A demo pool: training examples stored with a prompt file, from which each call retrieves the
``k`` nearest to its inputs as its demos (``optimizer="knn"``).

The pool is part of an lm_function's :class:`~lmprog.promptfile.State` and of its prompt file (a
``knn:`` section: ``k``, the ``embedder`` if any, and the ``pool`` of demos as plain records), so a
deployed program needs nothing but its prompt files. Retrieval compares the text of a call's input
values with the text of each pooled demo's inputs:

- by default with BM25 (``bm25s``, the ``lmprog[knn]`` extra): no model, deterministic;
- with an embedding model through litellm when ``embedder`` names one (cosine similarity; the pool
  is embedded once per process, each call embeds its own inputs).

Ties are broken by pool order, and the chosen demos are ordered from the least to the most similar,
so the nearest example sits right before the question. The index is built on first use and kept
with the pool object.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmprog._fingerprint import to_jsonable

#: the largest pool an optimizer stores by default (prompt files stay readable and diffable)
DEFAULT_MAX_POOL = 200


@dataclass(frozen=True)
class DemoPool:
    """``demos`` to retrieve ``k`` of per call, by the text of the input fields ``fields``.

    ``embedder`` is a litellm embedding model name; None means BM25.
    """

    k: int
    demos: tuple[Mapping[str, Any], ...]
    fields: tuple[str, ...]
    embedder: str | None = None
    _index: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False, hash=False)

    def retrieve(self, inputs: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
        """The ``k`` demos nearest to ``inputs``, least similar first (ties: earlier in the pool
        counts as nearer)."""
        if self.k <= 0 or not self.demos:
            return ()
        scores = self._scores(input_text(inputs, self.fields))
        ranked = sorted(range(len(self.demos)), key=lambda i: (-scores[i], i))[: self.k]
        return tuple(self.demos[i] for i in reversed(ranked))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (process workers, deep copies) without its index and lock: rebuilt on first use
        return (DemoPool, (self.k, self.demos, self.fields, self.embedder))

    def to_doc(self) -> dict[str, Any]:
        """The ``knn:`` section of a prompt file."""
        doc: dict[str, Any] = {"k": self.k, "fields": list(self.fields)}
        if self.embedder is not None:
            doc["embedder"] = self.embedder
        doc["pool"] = [to_jsonable(dict(d)) for d in self.demos]
        return doc

    def _scores(self, query: str) -> list[float]:
        if self.embedder is not None:
            return self._cosine(query)
        return self._bm25(query)

    def _bm25(self, query: str) -> list[float]:
        bm25s = _import_bm25s()
        with self._lock:
            retriever = self._index.get("bm25")
            if retriever is None:
                corpus = [input_text(d, self.fields) for d in self.demos]
                retriever = bm25s.BM25()
                retriever.index(_tokens(bm25s, corpus), show_progress=False)
                self._index["bm25"] = retriever
        words = _tokens(bm25s, [query])[0]
        if not words:
            return [0.0] * len(self.demos)
        return [float(s) for s in retriever.get_scores(words)]

    def _cosine(self, query: str) -> list[float]:
        with self._lock:
            vectors = self._index.get("vectors")
            if vectors is None:
                vectors = embed(self.embedder or "", [input_text(d, self.fields) for d in self.demos])
                self._index["vectors"] = vectors
        q = embed(self.embedder or "", [query])[0]
        return [_cos(q, v) for v in vectors]


def pool_from_doc(doc: Mapping[str, Any]) -> DemoPool:
    """A pool from the ``knn:`` section of a prompt file (already checked by ``pool_problems``)."""
    return DemoPool(
        k=int(doc["k"]),
        demos=tuple(dict(d) for d in doc.get("pool") or ()),
        fields=tuple(doc.get("fields") or ()),
        embedder=doc.get("embedder"),
    )


def pool_problems(doc: Any) -> list[str]:
    """What is wrong with a ``knn:`` section, one message per problem (empty when it is fine)."""
    if not isinstance(doc, Mapping):
        return ["must be a mapping with k, fields and pool"]
    problems = []
    k = doc.get("k")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        problems.append(f"k must be a whole number >= 0, got {k!r}")
    fields = doc.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        problems.append("fields must be a list of input field names")
    pool = doc.get("pool", [])
    if not isinstance(pool, list) or not all(isinstance(d, dict) for d in pool):
        problems.append("pool must be a list of mappings")
    embedder = doc.get("embedder")
    if embedder is not None and not isinstance(embedder, str):
        problems.append(f"embedder must be a model name, got {embedder!r}")
    return problems


def input_text(values: Mapping[str, Any], fields: Sequence[str]) -> str:
    """The text retrieval compares: the input values in field order (records as JSON)."""
    parts = []
    for name in fields:
        value = values.get(name)
        if value is None:
            continue
        parts.append(value if isinstance(value, str) else json.dumps(to_jsonable(value), sort_keys=True))
    return "\n".join(parts)


def embed(model: str, texts: list[str]) -> list[list[float]]:
    """Embeddings of ``texts`` from a litellm embedding model."""
    import litellm

    response = litellm.embedding(model=model, input=texts)
    return [list(map(float, item["embedding"])) for item in response.data]


def _import_bm25s() -> Any:
    try:
        import bm25s
    except ImportError as e:
        raise ImportError(
            "retrieving demos by BM25 needs the bm25s package: pip install 'lmprog[knn]' "
            "(or set embedder= to an embedding model)"
        ) from e
    return bm25s


def _tokens(bm25s: Any, texts: list[str]) -> list[list[str]]:
    tokens: list[list[str]] = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    return tokens


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
