"""A model-free text vectorizer for DSPy's ``KNNFewShot`` (lmprog's ``knn`` uses BM25 via bm25s).

``HashedTfidf``: lower-cased word unigrams and bigrams hashed (crc32) into ``dim`` buckets,
weighted by ``log(1 + tf) * idf`` with the idf fitted on the training inputs, L2-normalized, so
DSPy's dot-product ranking is cosine similarity of TF-IDF vectors — the same lexical signal as
BM25, with no model to download. Pure numpy.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

WORD = re.compile(r"[a-z0-9]+")


def terms(text: str) -> list[str]:
    words = WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in pairwise(words)]


def knn_text(example: Any) -> str:
    """An example's inputs as DSPy's KNN joins them (``"key: value | key: value"``)."""
    return " | ".join(f"{k}: {v}" for k, v in example.items() if k in example._input_keys)


class HashedTfidf:
    """``vectorizer(texts) -> array (len(texts), dim)``; call :meth:`fit` on the corpus first."""

    def __init__(self, dim: int = 4096) -> None:
        self.dim = dim
        self.idf = np.ones(dim)

    def _bucket(self, term: str) -> int:
        return zlib.crc32(term.encode()) % self.dim

    def fit(self, corpus: Iterable[str]) -> HashedTfidf:
        docs = list(corpus)
        df = np.zeros(self.dim)
        for text in docs:
            for bucket in {self._bucket(t) for t in terms(text)}:
                df[bucket] += 1
        self.idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
        return self

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim))
        for row, text in enumerate(texts):
            for term in terms(text):
                out[row, self._bucket(term)] += 1.0
        out = np.log1p(out) * self.idf
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)
