"""The benchmark tasks, framework-neutral: data loading, seeded splits, scoring and retrieval.

Nothing here imports lmprog or DSPy: both programs of a task read the same rows (plain dicts),
are scored by the same functions and (HotPotQA) retrieve with the same BM25 index, so a
difference in the results comes from the frameworks, not from the harness.

The data sets are read from ``../shared/data`` relative to the checkout (``BENCH_DATA`` overrides
it); they are never copied into the repository. A task whose files are absent is skipped.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    """``$BENCH_DATA``, else the first ``shared/data`` found beside the checkout or above it."""
    if os.environ.get("BENCH_DATA"):
        return Path(os.environ["BENCH_DATA"])
    for parent in REPO.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return REPO.parent / "shared" / "data"


DATA = _data_dir()

TREC_LABELS = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "number",
}
IRIS_LABELS = ("setosa", "versicolor", "virginica")


@dataclass
class Splits:
    """Seeded train/val/test rows of one task, and the task's label set (None for open answers)."""

    name: str
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    test: list[dict[str, Any]]
    labels: list[str] | None = None
    inputs: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


class TaskUnavailable(Exception):
    """The task's data files are absent: the task is skipped, and the report says why."""


# -- scoring (the same functions score both frameworks) -------------------------------------------
def normalize(text: Any) -> str:
    """SQuAD-style normalization: lower case, no punctuation, no articles, single spaces."""
    s = unicodedata.normalize("NFKC", str(text if text is not None else "")).lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact(gold: Any, predicted: Any) -> float:
    return float(normalize(gold) == normalize(predicted))


def title_recall(gold_titles: Sequence[str], retrieved: Sequence[str]) -> float:
    gold = set(gold_titles)
    return len(gold & set(retrieved)) / len(gold) if gold else 0.0


# -- splits ----------------------------------------------------------------------------------------
def _split(rows: list[dict[str, Any]], sizes: tuple[int, int, int], seed: int) -> tuple[list, list, list]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_train, n_val, n_test = sizes
    if n_train + n_val + n_test > len(rows):
        raise ValueError(f"split sizes {sizes} exceed the {len(rows)} rows available")
    picked = [rows[i] for i in order]
    return (
        picked[:n_train],
        picked[n_train : n_train + n_val],
        picked[n_train + n_val : n_train + n_val + n_test],
    )


def _two_files(
    train_rows: list[dict[str, Any]],
    test_rows: list[dict[str, Any]],
    sizes: tuple[int, int, int],
    seed: int,
    test_seed: int | None,
) -> tuple[list, list, list]:
    """Train/val from the train file (``seed``), test from the test file (``test_seed``, else
    ``seed``); a test size larger than the test file takes all of it."""
    train, val, _ = _split(train_rows, (sizes[0], sizes[1], 0), seed)
    n_test = min(sizes[2], len(test_rows))
    _, _, test = _split(test_rows, (0, 0, n_test), seed if test_seed is None else test_seed)
    return train, val, test


def _one_pool(
    rows: list[dict[str, Any]], sizes: tuple[int, int, int], seed: int, test_seed: int | None
) -> tuple[list, list, list]:
    """One pool of rows: with ``test_seed`` the test rows are drawn first with it (the same for
    every ``seed``) and train/val come from the rest with ``seed``; without, one seeded split."""
    if test_seed is None:
        return _split(rows, sizes, seed)
    _, _, test = _split(rows, (0, 0, sizes[2]), test_seed)
    held = {id(r) for r in test}
    rest = [r for r in rows if id(r) not in held]
    train, val, _ = _split(rest, (sizes[0], sizes[1], 0), seed)
    return train, val, test


def _need(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise TaskUnavailable(f"data absent: {', '.join(missing)}")


def load(
    name: str, sizes: tuple[int, int, int], seed: int, test_seed: int | None = None, **options: Any
) -> Splits:
    """The seeded splits of task ``name`` (``TaskUnavailable`` when its data is absent).

    With ``test_seed``, the test rows depend on it alone (the same for every ``seed``), and
    ``seed`` draws train and validation rows only.
    """
    loader = LOADERS.get(name)
    if loader is None:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(LOADERS)}")
    return loader(sizes, seed, test_seed=test_seed, **options)


def _banking77(
    sizes: tuple[int, int, int], seed: int, test_seed: int | None = None, intents: int | None = None
) -> Splits:
    """Banking77 intents. ``intents``: restrict to a seeded subset of that many intents."""
    root = DATA / "banking77"
    _need(root / "train.csv", root / "test.csv", root / "categories.json")
    labels = json.loads((root / "categories.json").read_text())
    notes = []
    if intents and intents < len(labels):
        # the intent subset is part of the task: with a fixed test seed it does not vary by seed
        labels = sorted(random.Random(seed if test_seed is None else test_seed).sample(labels, intents))
        notes.append(f"restricted to {intents} seeded intents of 77")
    keep = set(labels)

    def read(path: Path) -> list[dict[str, Any]]:
        with path.open(newline="", encoding="utf-8") as f:
            return [
                {"query": r["text"].strip(), "label": r["category"]}
                for r in csv.DictReader(f)
                if r["category"] in keep
            ]

    # train/val come from the official train file, test from the official test file
    train_rows, test_rows = read(root / "train.csv"), read(root / "test.csv")
    train, val, test = _two_files(train_rows, test_rows, sizes, seed, test_seed)
    return Splits("banking77", train, val, test, labels, ("query",), notes)


def _trec(sizes: tuple[int, int, int], seed: int, test_seed: int | None = None) -> Splits:
    root = DATA / "trec"
    _need(root / "TREC.train", root / "TREC.test")

    def read(path: Path) -> list[dict[str, Any]]:
        rows = []
        for line in path.read_text(encoding="latin-1").splitlines():
            if not line.strip():
                continue
            tag, question = line.split(" ", 1)
            rows.append({"question": question.strip(), "label": TREC_LABELS[tag.split(":")[0]]})
        return rows

    train, val, test = _two_files(read(root / "TREC.train"), read(root / "TREC.test"), sizes, seed, test_seed)
    return Splits("trec", train, val, test, list(TREC_LABELS.values()), ("question",))


def _scone(sizes: tuple[int, int, int], seed: int, test_seed: int | None = None) -> Splits:
    """ScoNe NLI (all six negation categories pooled): does the premise entail the hypothesis?"""
    root = DATA / "scone" / "scone_nli"
    train_files = sorted((root / "train").glob("*.csv")) if (root / "train").is_dir() else []
    test_files = sorted((root / "test").glob("*.csv")) if (root / "test").is_dir() else []
    if not train_files or not test_files:
        raise TaskUnavailable(f"data absent: {root}/{{train,test}}/*.csv")

    def read(files: list[Path]) -> list[dict[str, Any]]:
        rows = []
        for path in files:
            with path.open(newline="", encoding="utf-8") as f:
                for r in csv.DictReader(f):
                    # the edited (negated) pair when the file has one; one_scoped has only the original
                    suffix = "_edited" if r.get("sentence1_edited") else ""
                    gold = r.get("gold_label" + suffix) or r.get("gold_label_edited") or r["gold_label"]
                    rows.append(
                        {
                            "premise": r["sentence1" + suffix].strip(),
                            "hypothesis": r["sentence2" + suffix].strip(),
                            "label": "yes" if gold == "entailment" else "no",
                        }
                    )
        return rows

    train, val, test = _two_files(read(train_files), read(test_files), sizes, seed, test_seed)
    return Splits("scone", train, val, test, ["yes", "no"], ("premise", "hypothesis"))


def _iris(sizes: tuple[int, int, int], seed: int, test_seed: int | None = None) -> Splits:
    path = DATA / "iris" / "iris.csv"
    _need(path)
    lines = path.read_text().splitlines()[1:]  # the first line is a header of counts and names
    rows = []
    for line in lines:
        if not line.strip():
            continue
        *values, target = line.split(",")
        sl, sw, pl, pw = (float(v) for v in values)
        rows.append(
            {
                "sepal_length": sl,
                "sepal_width": sw,
                "petal_length": pl,
                "petal_width": pw,
                "label": IRIS_LABELS[int(target)],
            }
        )
    train, val, test = _one_pool(rows, sizes, seed, test_seed)
    inputs = ("sepal_length", "sepal_width", "petal_length", "petal_width")
    return Splits("iris", train, val, test, list(IRIS_LABELS), inputs)


def _hotpotqa(sizes: tuple[int, int, int], seed: int, test_seed: int | None = None) -> Splits:
    root = DATA / "hotpotqa"
    qa, corpus = root / "hotpot_dev500_qa.jsonl", root / "hotpot_dev500_pooled_corpus.jsonl"
    _need(qa, corpus)
    rows = []
    for line in qa.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            rows.append({"question": r["question"], "answer": r["answer"], "gold_titles": r["gold_titles"]})
    train, val, test = _one_pool(rows, sizes, seed, test_seed)
    return Splits("hotpotqa", train, val, test, None, ("question",))


def _gsm8k(sizes: tuple[int, int, int], seed: int, test_seed: int | None = None) -> Splits:
    """GSM8K grade-school math: the answer is the number after ``####`` in the solution."""
    root = DATA / "gsm8k"
    _need(root / "train.jsonl", root / "test.jsonl")

    def read(path: Path) -> list[dict[str, Any]]:
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                rows.append({"question": r["question"], "answer": r["answer"].split("####")[-1].strip()})
        return rows

    train, val, test = _two_files(
        read(root / "train.jsonl"), read(root / "test.jsonl"), sizes, seed, test_seed
    )
    return Splits("gsm8k", train, val, test, None, ("question",))


def number_match(gold: Any, predicted: Any) -> float:
    """GSM8K scoring: the last number in the prediction equals the gold number."""
    found = re.findall(r"-?\d[\d,]*\.?\d*", str(predicted if predicted is not None else ""))
    if not found:
        return 0.0
    try:
        return float(
            abs(float(found[-1].replace(",", "").rstrip(".")) - float(str(gold).replace(",", ""))) < 1e-6
        )
    except ValueError:
        return 0.0


LOADERS = {
    "gsm8k": _gsm8k,
    "banking77": _banking77,
    "trec": _trec,
    "scone": _scone,
    "iris": _iris,
    "hotpotqa": _hotpotqa,
}


# -- HotPotQA retrieval: BM25 (bm25s) over the pooled paragraphs of the 500 dev questions ---------
PASSAGE_WORDS = 60  # passages are cut to their first words: the 135M model reads ~190 tokens/s


@dataclass(frozen=True)
class Passage:
    title: str
    text: str

    def render(self) -> str:
        words = self.text.split()
        cut = " ".join(words[:PASSAGE_WORDS]) + (" ..." if len(words) > PASSAGE_WORDS else "")
        return f"{self.title}: {cut}"


class Retriever:
    """BM25 over the pooled corpus; ``search(query, k)`` returns the top passages, best first."""

    def __init__(self) -> None:
        import bm25s

        path = DATA / "hotpotqa" / "hotpot_dev500_pooled_corpus.jsonl"
        self.passages = [
            Passage(r["title"], r["text"])
            for r in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
        ]
        self._bm25s = bm25s
        self.index = bm25s.BM25()
        docs = [f"{p.title} {p.text}" for p in self.passages]
        self.index.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)

    def search(self, query: str, k: int) -> list[Passage]:
        tokens = self._bm25s.tokenize([query or "?"], stopwords="en", show_progress=False)
        if not tokens.ids or not tokens.ids[0]:
            return []
        docs, _ = self.index.retrieve(tokens, k=k, show_progress=False)
        return [self.passages[int(i)] for i in docs[0]]


@cache
def retriever() -> Retriever:
    return Retriever()
