from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest

from lmprog.data import Example, check_inputs, load_dataset, location, select_inputs, split
from lmprog.errors import DatasetError, UsageError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


# -- Example ---------------------------------------------------------------------------------------
def test_example_is_a_mapping_with_attribute_access():
    ex = Example({"question": "Who wrote Dune?"}, answer="Frank Herbert")
    assert ex["answer"] == ex.answer == "Frank Herbert"
    assert dict(ex) == {"question": "Who wrote Dune?", "answer": "Frank Herbert"}
    assert list(ex) == ["question", "answer"] and len(ex) == 2
    assert "question" in ex and "nope" not in ex
    assert ex.get("nope", 3) == 3
    with pytest.raises(AttributeError, match=r"no field 'nope'.*question, answer"):
        _ = ex.nope
    with pytest.raises(KeyError):
        _ = ex["nope"]


def test_example_is_immutable():
    ex = Example(a=1)
    with pytest.raises(AttributeError, match="immutable"):
        ex.a = 2
    with pytest.raises(TypeError):
        ex["a"] = 2  # type: ignore[index]
    assert ex.a == 1


def test_example_equality_and_hash():
    a = Example(q="x", tags=["a", "b"], meta={"k": [1]})
    b = Example({"q": "x", "tags": ["a", "b"], "meta": {"k": [1]}}).with_inputs("q")
    assert a == b and hash(a) == hash(b)
    assert a == {"q": "x", "tags": ["a", "b"], "meta": {"k": [1]}}
    assert a != Example(q="y", tags=["a", "b"], meta={"k": [1]})
    assert len({a, b, Example(q="y")}) == 2


def test_example_pickles_and_copies_with_marks():
    ex = load_dataset([{"q": "x", "a": "y"}])[0].with_inputs("q")
    for clone in (pickle.loads(pickle.dumps(ex)), copy.copy(ex), copy.deepcopy(ex)):
        assert clone == ex
        assert clone.input_keys == ("q",)
        assert clone.inputs() == {"q": "x"}


def test_inputs_and_labels():
    ex = Example(question="q", context="c", answer="a")
    assert ex.inputs(["question", "context"]) == {"question": "q", "context": "c"}
    assert ex.labels(["question", "context"]) == {"answer": "a"}
    marked = ex.with_inputs("question")
    assert marked.inputs() == {"question": "q"}
    assert marked.labels() == {"context": "c", "answer": "a"}
    # explicit marks win over the names passed
    assert marked.inputs(["context"]) == {"question": "q"}
    with pytest.raises(UsageError, match="with_inputs"):
        ex.inputs()


def test_to_dict_is_json_serializable():
    from pydantic import BaseModel

    class Doc(BaseModel):
        title: str

    ex = Example(doc=Doc(title="t"), n=1, when={1, 2})
    data = ex.to_dict()
    assert data["doc"] == {"title": "t"} and data["n"] == 1
    json.dumps(data)


def test_repr_roundtrips_simple_examples():
    ex = Example(q="x", a=1).with_inputs("q")
    assert repr(ex) == "Example(q='x', a=1).with_inputs('q')"
    assert eval(repr(ex)) == ex


# -- load_dataset: in-memory -----------------------------------------------------------------------
def test_load_rows_keeps_examples_and_converts_dicts():
    ex = Example(q="x").with_inputs("q")
    rows = load_dataset([ex, {"q": "y"}])
    assert rows[0] is ex
    assert isinstance(rows[1], Example) and rows[1].q == "y"


def test_load_rows_rejects_non_mappings_naming_the_row():
    with pytest.raises(DatasetError, match=r"trainset\[1\]: expected a mapping.*a string"):
        load_dataset([{"q": 1}, "oops"], name="trainset")


def test_limit_required_and_inputs():
    rows = [{"q": str(i), "a": i} for i in range(10)]
    out = load_dataset(rows, limit=3, required=["q", "a"], inputs=["q"])
    assert [r.q for r in out] == ["0", "1", "2"]
    assert out[0].inputs() == {"q": "0"}
    with pytest.raises(DatasetError, match=r"data\[1\]: missing required key\(s\) 'a'"):
        load_dataset([{"q": 1, "a": 1}, {"q": 2}], required=["q", "a"])


# -- load_dataset: files ---------------------------------------------------------------------------
def test_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": "a", "n": 1}\n\n{"q": "b", "n": 2}\n', encoding="utf-8")
    rows = load_dataset(path)
    assert rows == [{"q": "a", "n": 1}, {"q": "b", "n": 2}]
    assert location(rows[1], 1) == f"{path}, line 3"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('{"q": 1}\n{"q": 2,}\n', 2, "invalid JSON"),
        ('{"q": 1}\n[1, 2]\n', 2, "expected a JSON object, got an array"),
        ('{"q": 1}\n\n\n"str"\n', 4, "expected a JSON object, got a string"),
        ('{"q": 1}\n{"q": 2\n', 2, "invalid JSON"),
    ],
)
def test_jsonl_malformed_rows_name_file_and_line(tmp_path, text, line, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"bad\.jsonl, line {line}: {problem}"):
        load_dataset(path)


def test_json_array_with_line_numbers(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"q": "a"},\n  {"q": "b"}\n]\n', encoding="utf-8")
    rows = load_dataset(str(path))
    assert [r.q for r in rows] == ["a", "b"]
    assert location(rows[1], 1).endswith("d.json, line 3")


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('[\n  {"q": "a"},\n  7\n]', 3, "expected a JSON object, got a number"),
        ('[\n  {"q": "a"},\n  {"q": }\n]', 3, "invalid JSON"),
        ('[\n  {"q": "a"}\n  {"q": "b"}\n]', 3, "invalid JSON: expected ',' or ']'"),
        ('{"rows": []}', 1, "expected a JSON array of objects at the top level, got an object"),
        ("[]", None, "the file holds no rows"),
    ],
)
def test_json_malformed(tmp_path, text, line, problem):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    where = rf"bad\.json, line {line}" if line else r"bad\.json"
    with pytest.raises(DatasetError, match=rf"{where}: {problem}"):
        load_dataset(path)


def test_csv_and_tsv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\nhello,greet\n"multi\nline, with comma",other\nbye,leave\n', encoding="utf-8")
    rows = load_dataset(path)
    assert rows[1] == {"text": "multi\nline, with comma", "label": "other"}
    assert location(rows[2], 2).endswith("d.csv, line 5")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("a\tb\n1\t2\n", encoding="utf-8")
    assert load_dataset(tsv) == [{"a": "1", "b": "2"}]


def test_csv_wrong_column_count(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nhello,greet\nbad,row,extra\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d\.csv, line 3: expected 2 columns \(text, label\), got 3"):
        load_dataset(path)


def test_csv_header_only_and_duplicate_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="holds no rows"):
        load_dataset(path)
    path.write_text("a,a\n1,2\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 1: duplicate column"):
        load_dataset(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_text("  \n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"empty.*: the file is empty"):
        load_dataset(path)


def test_missing_file_unknown_format_and_bad_encoding(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope.jsonl")
    txt = tmp_path / "d.txt"
    txt.write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"unsupported data format '\.txt'"):
        load_dataset(txt)
    assert load_dataset(txt.with_suffix(".txt"), format="csv", limit=0) == []
    latin = tmp_path / "l.csv"
    latin.write_bytes("a\nok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"l\.csv, line 3: not valid utf-8"):
        load_dataset(latin)
    assert load_dataset(latin, encoding="latin-1")[1] == {"a": "café"}


def test_required_keys_in_files(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": 1, "a": 2}\n{"q": 3}\n', encoding="utf-8")
    with pytest.raises(
        DatasetError, match=r"d\.jsonl, line 2: missing required key\(s\) 'a' \(the row has: q\)"
    ):
        load_dataset(path, required=["q", "a"])


def test_limit_stops_before_a_later_bad_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"q": 1}\n{"q": 2}\nnot json\n', encoding="utf-8")
    assert len(load_dataset(path, limit=2)) == 2


@pytest.mark.skipif(not SHARED.exists(), reason="shared data sets not available")
def test_shared_data_sets_load():
    gsm = load_dataset(SHARED / "gsm8k" / "test.jsonl", limit=5)
    assert len(gsm) == 5 and set(gsm[0]) == {"question", "answer"}
    hotpot = load_dataset(SHARED / "hotpotqa" / "hotpot_dev_v1_simplified.json", limit=3)
    assert hotpot[0]["answer"] == "yes"
    banking = load_dataset(SHARED / "banking77" / "test.csv", required=["text", "category"])
    assert len(banking) > 1000


# -- input checks ----------------------------------------------------------------------------------
def test_select_inputs():
    ex = Example(question="q", answer="a")
    assert select_inputs(ex, ["question", "k"], optional=["k"]) == {"question": "q"}
    with pytest.raises(
        DatasetError, match=r"dev\[4\]: missing input\(s\) 'context' \(the row has: question, answer\)"
    ):
        select_inputs(ex, ["question", "context"], index=4, source="dev")
    marked = ex.with_inputs("question", "answer")
    with pytest.raises(DatasetError, match="'answer' marked as input"):
        select_inputs(marked, ["question"])
    assert select_inputs(marked, ["question"], extra_ok=True) == {"question": "q", "answer": "a"}


def test_check_inputs_names_rows_and_lines(tmp_path):
    rows = [{"question": "q"}, {"q": "typo"}, {"question": "ok"}, {}]
    with pytest.raises(DatasetError, match=r"2 row\(s\).*trainset\[1\].*trainset\[3\]"):
        check_inputs(rows, ["question"], source="trainset")
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "q"}\n{"q": "typo"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d\.jsonl, line 2: missing input\(s\) 'question'"):
        check_inputs(load_dataset(path), ["question"])
    assert check_inputs(rows[:1], ["question"]) == [Example(question="q")]


# -- split -----------------------------------------------------------------------------------------
def test_split_fractions_are_seeded_and_cover_everything():
    items = list(range(100))
    train, val, test = split(items, 0.6, 0.2, 0.2, seed=0)
    assert (len(train), len(val), len(test)) == (60, 20, 20)
    assert sorted(train + val + test) == items
    assert (train, val, test) == tuple(split(items, 0.6, 0.2, 0.2, seed=0))
    assert train != split(items, 0.6, 0.2, 0.2, seed=1)[0]
    assert train != items[:60]  # seed 0 shuffles


def test_split_rest_and_sizes():
    items = list(range(10))
    train, rest = split(items, 0.8)
    assert len(train) == 8 and len(rest) == 2
    a, b, c = split(items, 3, 2)
    assert (len(a), len(b), len(c)) == (3, 2, 5)
    assert split(items, 4, 6, shuffle=False) == [items[:4], items[4:]]


def test_split_rejects_bad_parts():
    with pytest.raises(UsageError):
        split([1, 2], 0.8, 0.5)
    with pytest.raises(UsageError):
        split([1, 2], 3)
    with pytest.raises(UsageError):
        split([1, 2], 0.5, 1)
    with pytest.raises(UsageError):
        split([1, 2])
