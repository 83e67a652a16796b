"""A demo pool: training examples stored with a prompt file, from which each call retrieves the
``k`` nearest to its inputs as its demos (``optimizer="knn"``).

The pool is part of an lm_function's :class:`~lmprog.promptfile.State` and of its prompt file (a
``knn:`` section: ``k``, the ``embedder`` if any, and the ``pool`` of demos as plain records), so a
deployed program needs nothing but its prompt files. Retrieval compares the text of a call's input
values with the text of each pooled demo's inputs:

- by default with BM25 (``bm25s``, the ``lmprog[knn]`` extra): no model, deterministic; words of
  two or more characters and numbers (``5.1``, ``7``) are its tokens, and a pool whose inputs have
  no token at all ranks by the tie order below instead of failing;
- by distance when every input field of the call and of every pooled demo is a number (features
  such as Iris's measurements, where words say nothing): Euclidean distance over the fields, each
  scaled by its standard deviation in the pool, no extra needed;
- with an embedding model through litellm when ``embedder`` names one (cosine similarity; the pool
  is embedded once per process, each call embeds its own inputs).

Ties are broken by a hash of the call's input text and each tied demo's (:func:`tie_key`), not by
pool order, and the chosen demos are ordered from the least to the most similar, so the nearest
example sits right before the question. The index is built on first use and kept with the pool
object.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
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
        """The ``k`` demos nearest to ``inputs``, least similar first (ties: see :func:`tie_key`)."""
        if self.k <= 0 or not self.demos:
            return ()
        query = input_text(inputs, self.fields)
        scores = self._scores(inputs, query)
        texts = self._texts()
        ranked = sorted(range(len(self.demos)), key=lambda i: (-scores[i], tie_key(query, texts[i]), i))
        return tuple(self.demos[i] for i in reversed(ranked[: self.k]))

    def _texts(self) -> list[str]:
        """Each demo's compared text (:func:`input_text`), built once: ties, BM25 and embeddings."""
        with self._lock:
            if "texts" not in self._index:
                self._index["texts"] = [input_text(d, self.fields) for d in self.demos]
            texts: list[str] = self._index["texts"]
            return texts

    @property
    def numeric(self) -> bool:
        """Whether every pooled demo's compared inputs are numbers: a call whose inputs are numbers
        too is then ranked by scaled distance, without BM25 (no extra needed)."""
        return self._scaled() is not None

    @property
    def ready(self) -> bool:
        """Whether ranking needs no missing extra: an embedding model, a numeric pool, or
        ``bm25s`` (``lmprog[knn]``) installed."""
        if self.embedder is not None or self.numeric:
            return True
        try:
            _import_bm25s()
        except ImportError:
            return False
        return True

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

    def _scores(self, inputs: Mapping[str, Any], query: str) -> list[float]:
        """Each demo's similarity to ``inputs`` (``query``: their text, :func:`input_text`)."""
        if self.embedder is not None:
            return self._cosine(query)
        scaled = self._scaled()
        if scaled is not None and _numbers(inputs, self.fields):
            scales, rows = scaled
            point = [float(inputs[f]) / s for f, s in zip(self.fields, scales, strict=True)]
            return [-math.dist(point, row) for row in rows]
        return self._bm25(query)

    def _scaled(self) -> tuple[list[float], list[list[float]]] | None:
        """Each field's spread in the pool, and every pooled demo's inputs divided by them; None
        when some pooled input is not a number. Built once, on first use."""
        with self._lock:
            if "scaled" not in self._index:
                self._index["scaled"] = None
                if self.fields and all(_numbers(d, self.fields) for d in self.demos):
                    columns = [[float(d[f]) for d in self.demos] for f in self.fields]
                    scales = [statistics.pstdev(column) or 1.0 for column in columns]
                    rows = [
                        [v / s for v, s in zip(row, scales, strict=True)]
                        for row in zip(*columns, strict=True)
                    ]
                    self._index["scaled"] = (scales, rows)
            scaled: tuple[list[float], list[list[float]]] | None = self._index["scaled"]
            return scaled

    def _bm25(self, query: str) -> list[float]:
        bm25s = _import_bm25s()
        texts = self._texts()
        with self._lock:
            if "bm25" not in self._index:
                corpus = _tokens(bm25s, texts)
                # bm25s cannot index a corpus without a single token: such a pool ranks by tie_key
                self._index["bm25"] = None
                if any(corpus):
                    self._index["bm25"] = bm25s.BM25()
                    self._index["bm25"].index(corpus, show_progress=False)
            retriever = self._index["bm25"]
        words = _tokens(bm25s, [query])[0]
        if not words or retriever is None:
            return [0.0] * len(self.demos)
        return [float(s) for s in retriever.get_scores(words)]

    def _cosine(self, query: str) -> list[float]:
        texts = self._texts()
        with self._lock:
            vectors = self._index.get("vectors")
            if vectors is None:
                vectors = embed(self.embedder or "", texts)
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


def tie_key(query: str, text: str) -> bytes:
    """How demos of equal similarity to a call are ordered: by a hash of the call's input text
    and the demo's, so the order is deterministic, varies from call to call, and does not depend
    on where a demo sits in the pool. (Breaking ties by pool order put the same demos nearest to
    every call that tied, and a label-balanced pool interleaves labels, rare ones early: on TREC a
    question whose only word in common with the pool was "what" tied with every short "What is
    X ?" demo, and the first of them in the pool were two abbreviations. 61 of 200 test questions
    had an abbreviation as their nearest demo, and the model answered "abbreviation" 84 times.)"""
    return hashlib.blake2b(f"{query}\x00{text}".encode("utf-8", "surrogatepass"), digest_size=8).digest()


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


#: BM25's tokens: numbers (``5.1``, ``7``) and words of two or more characters
_TOKEN = r"(?u)\b\d+(?:\.\d+)?\b|\b\w\w+\b"


def _tokens(bm25s: Any, texts: list[str]) -> list[list[str]]:
    tokens: list[list[str]] = bm25s.tokenize(
        texts, stopwords="en", token_pattern=_TOKEN, return_ids=False, show_progress=False
    )
    return tokens


def _numbers(values: Mapping[str, Any], fields: Sequence[str]) -> bool:
    """Whether every one of ``fields`` holds a finite real number (not a bool) in ``values``."""
    return all(
        isinstance(v := values.get(f), int | float) and not isinstance(v, bool) and math.isfinite(v)
        for f in fields
    )


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
