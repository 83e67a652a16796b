"""The benchmark harness's pure parts: intervals, cell keys, resume/skip logic, report, SVG.

Fast and model-free: ``benchmarks/`` is put on ``sys.path`` and only its pure modules are imported
(``stats``, ``cells``, ``report_v2``, ``svgplot``, ``bow``, ``configs``).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import bow  # noqa: E402
import cells  # noqa: E402
import configs  # noqa: E402
import report_v2  # noqa: E402
import stats  # noqa: E402
import svgplot  # noqa: E402


# -- intervals -----------------------------------------------------------------------------------
def test_bootstrap_mean_of_constant_scores_has_a_zero_width_interval() -> None:
    iv = stats.bootstrap_mean([[1, 1, 1, 1], [1, 1, 1, 1]])
    assert (iv.mean, iv.low, iv.high) == (100.0, 100.0, 100.0)


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_examples() -> None:
    small = stats.bootstrap_mean([[1, 0] * 10] * 3)
    large = stats.bootstrap_mean([[1, 0] * 200] * 3)
    assert small.low < 50.0 < small.high
    assert large.low < 50.0 < large.high
    assert (large.high - large.low) < (small.high - small.low)
    assert large.high - large.low < 12  # ±~5 points for 400 examples at p = 0.5


def test_bootstrap_interval_widens_when_seeds_disagree() -> None:
    agree = stats.bootstrap_mean([[1] * 50 + [0] * 50] * 3)
    disagree = stats.bootstrap_mean([[1] * 90 + [0] * 10, [1] * 50 + [0] * 50, [1] * 10 + [0] * 90])
    assert agree.mean == disagree.mean == 50.0
    assert (disagree.high - disagree.low) > (agree.high - agree.low)


def test_bootstrap_is_reproducible_and_checks_shapes() -> None:
    scores = [[1, 0, 1, 1, 0], [0, 0, 1, 1, 1]]
    assert stats.bootstrap_mean(scores) == stats.bootstrap_mean(scores)
    with pytest.raises(ValueError, match="same test examples"):
        stats.bootstrap_mean([[1, 0], [1]])
    with pytest.raises(ValueError, match="no scores"):
        stats.bootstrap_mean([])


def test_paired_difference_is_real_only_when_its_interval_excludes_zero() -> None:
    better = [[1] * 150 + [0] * 50] * 3
    worse = [[1] * 100 + [0] * 100] * 3
    diff = stats.paired_difference(better, worse)
    assert diff.mean == pytest.approx(25.0)
    assert diff.excludes_zero()
    # the same accuracy reached on different examples: no real difference
    a = [[1, 0] * 100] * 3
    b = [[0, 1] * 100] * 3
    same = stats.paired_difference(a, b)
    assert same.mean == 0.0 and not same.excludes_zero()
    with pytest.raises(ValueError, match="shapes differ"):
        stats.paired_difference([[1, 0]], [[1, 0, 1]])


def test_majority_baseline_prediction_counts_and_collapse() -> None:
    assert stats.majority_baseline(["a", "b", "a", "c"]) == ("a", 50.0)
    assert stats.prediction_counts(["x", None, "x"]) == {"x": 2, "<none>": 1}
    assert stats.collapsed(["yes"] * 4, ["yes", "no", "no", "yes"])
    assert not stats.collapsed(["yes"] * 4, ["yes"] * 4)  # the gold labels are all one label
    assert not stats.collapsed(["yes", "no", "yes", "yes"], ["yes", "no", "no", "yes"])
    assert not stats.collapsed([None] * 4, ["yes", "no", "no", "yes"])  # failures, not a label


# -- cell keys, store, resume ------------------------------------------------------------------------
SETTINGS: dict[str, Any] = {
    "model": "m:1:abc",
    "sizes": [10, 5, 20],
    "budget": 16,
    "optimizer": ["bootstrap", {"k": 4}],
}


def _cell(**changes: Any) -> cells.Cell:
    settings = {**SETTINGS, **changes.pop("settings", {})}
    base: dict[str, Any] = {
        "task": "trec",
        "framework": "lmprog",
        "method": "bootstrap",
        "seed": 0,
        **changes,
    }
    return cells.Cell(base["task"], base["framework"], base["method"], base["seed"], settings)


def test_cell_key_is_stable_and_covers_every_setting_and_coordinate() -> None:
    key = _cell().key
    assert key == _cell().key
    reordered = cells.Cell("trec", "lmprog", "bootstrap", 0, dict(reversed(list(SETTINGS.items()))))
    assert reordered.key == key
    others = [
        _cell(settings={"budget": 17}),
        _cell(settings={"model": "m:1:abd"}),
        _cell(settings={"sizes": [10, 5, 21]}),
        _cell(settings={"optimizer": ["bootstrap", {"k": 3}]}),
        _cell(seed=1),
        _cell(framework="dspy"),
        _cell(task="scone"),
        _cell(method="mipro"),
    ]
    assert len({key, *(c.key for c in others)}) == len(others) + 1


def test_cell_settings_must_be_json() -> None:
    with pytest.raises(TypeError, match="plain JSON"):
        _ = _cell(settings={"budget": object()}).key


def test_store_resumes_skips_stored_cells_and_recomputes_changed_ones(tmp_path: Path) -> None:
    store = cells.CellStore(tmp_path)
    planned = [_cell(seed=0), _cell(seed=1), _cell(seed=2)]
    assert cells.missing(planned, store) == planned
    store.save(planned[0], {"test": {"score": 50.0}})
    store.save(planned[2], {"test": {"score": 70.0}})
    assert cells.missing(planned, store) == [planned[1]]  # a re-run computes only what is missing
    assert store.load(planned[2]) == {"test": {"score": 70.0}}

    changed = _cell(seed=0, settings={"budget": 32})  # the same coordinates, other settings
    assert store.load(changed) is None and store.stale(changed) is not None
    assert cells.missing([changed], store) == [changed]
    store.save(changed, {"test": {"score": 60.0}})
    assert store.load(changed) == {"test": {"score": 60.0}}
    assert store.load(planned[0]) is None  # the old result is never served for the new settings
    kept = [
        p
        for p in (tmp_path / "trec").iterdir()
        if p.name.startswith("lmprog-bootstrap-seed0.") and p != store.path(changed)
    ]
    assert len(kept) == 1 and json.loads(kept[0].read_text())["result"] == {"test": {"score": 50.0}}


def test_store_treats_a_damaged_or_half_written_file_as_missing(tmp_path: Path) -> None:
    store = cells.CellStore(tmp_path)
    cell = _cell()
    store.path(cell).parent.mkdir(parents=True)
    store.path(cell).write_text('{"key": "')  # a run killed while writing (without the atomic rename)
    assert cells.missing([cell], store) == [cell]
    store.save(cell, {"ok": 1})
    assert store.load(cell) == {"ok": 1}
    assert not list(tmp_path.rglob("*.tmp"))


def test_cache_dirs_differ_per_cell_and_settings(tmp_path: Path) -> None:
    dirs = {
        cells.cache_dir(tmp_path, c)
        for c in (_cell(), _cell(seed=1), _cell(framework="dspy"), _cell(settings={"budget": 1}))
    }
    assert len(dirs) == 4


# -- configurations --------------------------------------------------------------------------------
def test_every_configuration_runs_every_optimizer_on_both_sides_with_one_budget_per_pair() -> None:
    for config in configs.CONFIGS.values():
        lm = configs.lmprog_methods(config["knobs"])
        ds = configs.dspy_methods(config["knobs"])
        assert set(lm) >= set(configs.METHOD_LABELS) and set(ds) >= set(configs.METHOD_LABELS)
        for method in configs.METHOD_LABELS:
            assert (lm[method] is None) == (ds[method] is None)
            if lm[method] is not None and method not in ("labeled", "knn"):
                assert configs.budget(config, method) > 0, (config["name"], method)
    # a new lmprog-only option is one line in lmprog_methods and gets its optimizer's budget
    assert configs.budget(configs.FULL, "mipro_layouts", "mipro") == configs.budget(configs.FULL, "mipro")
    for config in configs.CONFIGS.values():
        for task in config["tasks"]:
            for method in configs.METHOD_LABELS:
                sizes = configs.sizes_for(config, task, method)
                # DSPy's MIPROv2 refuses a minibatch larger than the valset
                assert sizes[1] >= config["knobs"]["minibatch"], (config["name"], task, method)
                assert sizes[1] <= config["tasks"][task][1]
            # lmprog's mipro refuses a budget below baseline + one trial (its minibatch scaled down
            # to one example) + one full evaluation
            val = configs.sizes_for(config, task, "mipro")[1]
            assert 2 * val + 1 <= configs.budget(config, "mipro"), (config["name"], task)
    # the cap is the method's, else its optimizer's; the same rows for both frameworks
    assert configs.sizes_for(configs.FULL, "trec", "mipro") == (200, 40, 200)
    assert configs.sizes_for(configs.FULL, "trec", "mipro_layouts", "mipro") == (200, 40, 200)
    assert configs.sizes_for(configs.FULL, "trec", "bootstrap") == (200, 40, 200)
    assert configs.sizes_for(configs.FULL, "trec", "zero_shot") == (200, 100, 200)
    # every optimizer's budget pays for measuring its result on validation and one more variant
    # (lmprog's variants step: scored labels), labeled and knn included
    for config in configs.CONFIGS.values():
        for task in config["tasks"]:
            for method, spec in configs.lmprog_methods(config["knobs"]).items():
                if spec is not None:
                    val = configs.sizes_for(config, task, method, spec[0])[1]
                    assert configs.budget(config, method, spec[0]) >= 2 * val, (config["name"], task, method)
    assert configs.seeds_for(configs.FULL, "zero_shot") == [0]
    assert configs.seeds_for(configs.FULL, "mipro") == [0, 1, 2]
    assert all(sizes[2] >= 200 or task == "iris" for task, sizes in configs.FULL["tasks"].items())


# -- report and SVG --------------------------------------------------------------------------------
def _payload(framework: str, method: str, seed: int, scores: list[int], preds: list[str]) -> dict[str, Any]:
    gold = ["a", "b"] * (len(scores) // 2)
    lm = {"requests": 10, "prompt_tokens": 1000, "completion_tokens": 50}
    return {
        "task": "trec",
        "framework": framework,
        "method": method,
        "seed": seed,
        "result": {
            "optimize": {"lm": lm},
            "test": {"lm": lm, "scores": scores, "predictions": preds, "gold": gold, "score": 0.0},
            "cell_seconds": 3.0,
        },
    }


def _summary() -> dict[str, Any]:
    n = 40
    payloads = [_payload("lmprog", "zero_shot", 0, [1, 0] * (n // 2), ["a", "a"] * (n // 2))]
    for seed in (0, 1, 2):
        payloads.append(_payload("lmprog", "bootstrap", seed, [1] * n, ["a", "b"] * (n // 2)))
        payloads.append(_payload("dspy", "bootstrap", seed, [1, 0] * (n // 2), ["a"] * n))
    return report_v2.summarize(payloads, task_order=["trec"])


def test_summary_pairs_the_best_methods_flags_collapse_and_counts_costs() -> None:
    s = _summary()["tasks"]["trec"]
    assert s["majority"] == {"label": "a", "accuracy": 50.0}
    assert s["best"] == {"lmprog": "bootstrap", "dspy": "bootstrap"}
    assert s["best_difference"]["mean"] == pytest.approx(50.0) and s["best_difference"]["real"]
    dspy = s["methods"]["bootstrap"]["dspy"]
    assert dspy["collapsed_seeds"] == 3 and dspy["per_seed"][0]["prediction_counts"] == {"a": 40}
    assert s["methods"]["bootstrap"]["lmprog"]["collapsed_seeds"] == 0
    assert s["methods"]["bootstrap"]["lmprog"]["calls"] == 20
    costs = _summary()["costs"]["lmprog"]["bootstrap"]
    assert costs["prompt_tokens"] == 2000 and costs["dollars"] == pytest.approx(report_v2.dollars(2000, 100))


def test_markdown_shows_intervals_real_differences_baseline_and_collapse() -> None:
    text = report_v2.markdown(_summary(), {"configuration": "test"}, configs.METHOD_LABELS)
    assert "majority class 'a': 50.0" in text
    assert "| bootstrap / BootstrapFewShot | 100.0 [100.0, 100.0] | 50.0 [" in text
    assert "⚠ collapsed 3/3" in text
    assert "**real**" in text
    assert "Best lmprog (bootstrap) − best DSPy (bootstrap): +50.0" in text
    assert "seed 0 COLLAPSED (a: 40)" in text


def test_svg_is_well_formed_with_one_point_per_framework_and_method() -> None:
    text = report_v2.svg(_summary(), configs.METHOD_LABELS, title="t <&>")
    root = ET.fromstring(text)
    ns = "{http://www.w3.org/2000/svg}"
    circles = [c for c in root.iter(ns + "circle") if c.find(ns + "title") is not None]
    assert len(circles) == 3  # lmprog zero-shot, lmprog bootstrap, DSPy bootstrap
    assert any("dspy BootstrapFewShot: 50.0" in (c.find(ns + "title").text or "") for c in circles)
    assert "t &lt;&amp;&gt;" in text


def test_svg_places_points_by_calls_and_accuracy() -> None:
    panel = svgplot.Panel(
        "p", [svgplot.Point("a", "x", 0, 0, 0, 0), svgplot.Point("a", "y", 1000, 100, 90, 100)]
    )
    root = ET.fromstring(svgplot.render([panel]))
    ns = "{http://www.w3.org/2000/svg}"
    points = {
        c.find(ns + "title").text.split(":")[0]: c
        for c in root.iter(ns + "circle")
        if c.find(ns + "title") is not None
    }  # type: ignore[union-attr]
    c0, c1 = points["a x"], points["a y"]
    assert float(c0.get("cx", 0)) < float(c1.get("cx", 0))  # more calls: further right
    assert float(c0.get("cy", 0)) > float(c1.get("cy", 0))  # higher accuracy: higher up


def test_bag_of_words_vectorizer_ranks_the_lexically_closest_text_first() -> None:
    corpus = ["how do I reset my card pin", "what is the exchange rate", "my card was declined"]
    vec = bow.HashedTfidf(dim=512).fit(corpus)
    m = vec(corpus)
    q = vec(["I forgot my card pin"])[0]
    assert m.shape == (3, 512)
    assert int((m @ q).argmax()) == 0
    assert abs(float((m[0] ** 2).sum()) - 1.0) < 1e-9


# -- duration estimate ---------------------------------------------------------------------------
def test_estimate_extrapolates_seconds_per_request_and_retries_to_planned_cells() -> None:
    import estimate

    def measured(fw: str, task: str, opt: int, test: int, n: int, seconds: float) -> dict[str, Any]:
        half = seconds / 2
        return {
            "framework": fw,
            "task": task,
            "result": {
                "optimize": {"lm": {"requests": opt}, "seconds": half},
                "test": {"lm": {"requests": test}, "seconds": half, "n": n},
            },
        }

    table = estimate.rates(
        [measured("lmprog", "trec", 10, 10, 10, 20.0), measured("dspy", "trec", 0, 20, 10, 40.0)]
    )
    assert table[("lmprog", "trec")] == {"seconds_per_request": 1.0, "requests_per_example": 1.0}
    assert table[("dspy", "classification")] == {"seconds_per_request": 2.0, "requests_per_example": 2.0}
    planned = [
        cells.Cell("scone", "lmprog", "bootstrap", 0, {"budget": 50, "sizes": [0, 0, 200]}),
        cells.Cell("scone", "dspy", "bootstrap", 0, {"budget": 50, "sizes": [0, 0, 200]}),
    ]
    # lmprog: (50 + 200 * 1) * 1 s; DSPy: (50 + 200 * 2) * 2 s (same kind of task: classification)
    assert estimate.run_seconds(planned, table) == {"lmprog": 250.0, "dspy": 900.0, "wall": 900.0}
    assert estimate.run_seconds(planned, table, processes=1)["wall"] == 1150.0
    assert (
        estimate.cell_seconds(cells.Cell("x", "other", "m", 0, {"budget": 1, "sizes": [0, 0, 1]}), table)
        is None
    )


def test_a_failed_optimizer_is_flagged_in_the_table_and_the_prediction_counts() -> None:
    failed = _payload("dspy", "mipro", 0, [1, 0] * 20, ["a", "b"] * 20)
    failed["result"]["optimize"]["error"] = "AdapterParseError: no label"
    ok = _payload("lmprog", "mipro", 0, [1, 0] * 20, ["a", "b"] * 20)
    summary = report_v2.summarize([failed, ok])
    assert summary["tasks"]["trec"]["methods"]["mipro"]["dspy"]["failed_seeds"] == 1
    assert summary["tasks"]["trec"]["methods"]["mipro"]["lmprog"]["failed_seeds"] == 0
    text = report_v2.markdown(summary, {}, configs.METHOD_LABELS)
    assert "✗ optimizer failed 1/1" in text and "seed 0 OPTIMIZER FAILED (a: 20, b: 20)" in text


def test_estimate_by_cpu_time_uses_only_cells_that_recorded_it() -> None:
    import estimate

    old = {
        "framework": "lmprog",
        "task": "trec",
        "result": {"test": {"lm": {"requests": 10}, "seconds": 90.0, "n": 10}},
    }
    new = {
        "framework": "lmprog",
        "task": "trec",
        "result": {"test": {"lm": {"requests": 10}, "seconds": 60.0, "cpu_seconds": 5.0, "n": 10}},
    }
    assert estimate.rates([old, new])[("lmprog", "trec")]["seconds_per_request"] == 7.5
    assert estimate.rates([old, new], "cpu_seconds")[("lmprog", "trec")]["seconds_per_request"] == 0.5
    assert estimate.rates([old], "cpu_seconds") == {}


def test_lanes_balance_expected_time_and_keep_each_framework_together() -> None:
    import estimate

    table = {
        ("lmprog", "classification"): {"seconds_per_request": 1.0, "requests_per_example": 1.0},
        ("dspy", "classification"): {"seconds_per_request": 4.0, "requests_per_example": 1.0},
    }
    planned = [
        cells.Cell("trec", fw, "m", s, {"budget": 0, "sizes": [0, 0, 10]})
        for fw in ("lmprog", "dspy")
        for s in range(4)
    ]
    lanes = estimate.lanes(planned, table, 2)
    assert sorted(map(id, lanes[0] + lanes[1])) == sorted(map(id, planned))  # every cell once
    loads = [sum(estimate.cell_seconds(c, table) or 0 for c in lane) for lane in lanes]
    assert loads == [100.0, 100.0]  # 4 x 10 s of lmprog + 4 x 40 s of DSPy, split evenly
    for lane in lanes:  # lmprog's cells first, then DSPy's: one worker per framework group
        frameworks = [c.framework for c in lane]
        assert frameworks == sorted(frameworks, key=lambda f: f != "lmprog")
    assert estimate.run_seconds(planned, table, processes=2)["wall"] == 100.0
    assert estimate.run_seconds(planned, table, processes=1)["wall"] == 200.0


def test_calls_are_the_frameworks_own_count_where_the_cell_has_one() -> None:
    # lmprog's completion layout goes to llama.cpp directly, past the litellm meter: the meter
    # saw 150 of the 200 test requests that lmprog's own usage counted
    result = {
        "optimize": {"lm": {"requests": 40, "prompt_tokens": 900}},
        "test": {
            "lm": {"requests": 150, "prompt_tokens": 3000},
            "lm_own": {"requests": 200, "prompt_tokens": 4000},
        },
    }
    assert report_v2._calls(result, "test") == 200
    assert report_v2._calls(result, "test", "prompt_tokens") == 4000
    assert report_v2._calls(result, "optimize") == 40  # no own count: the meter's
    assert report_v2._calls(result, "missing") == 0


def test_the_report_names_the_lmprog_commits_when_cells_come_from_several() -> None:
    payloads = []
    for seed, commit in ((0, "aaaaaaaaaaaa1"), (1, "aaaaaaaaaaaa1"), (2, "bbbbbbbbbbbb2")):
        p = _payload("lmprog", "bootstrap", seed, [1, 0] * 20, ["a", "b"] * 20)
        p["result"]["lmprog_commit"] = commit
        payloads.append(p)
    summary = report_v2.summarize(payloads)
    assert summary["lmprog_commits"] == {"aaaaaaaaaa": 2, "bbbbbbbbbb": 1}
    text = report_v2.markdown(summary, {}, configs.METHOD_LABELS)
    assert "more than one commit of lmprog (cells: `aaaaaaaaaa` 2, `bbbbbbbbbb` 1)" in text
    one = report_v2.summarize(payloads[:2])
    assert "more than one commit" not in report_v2.markdown(one, {}, configs.METHOD_LABELS)


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path: Path) -> None:
    import datetime as dt

    import run  # benchmarks/run.py: stdlib imports only at module level

    # regression: two runs started at once (other tasks) collided on the directory name; the
    # directories of this second and the next exist already, as another run's would
    now = dt.datetime.now()
    taken = {(now + dt.timedelta(seconds=s)).strftime("%Y-%m-%d-%H%M%S") for s in (0, 1)}
    for name in taken:
        (tmp_path / name).mkdir()
    made = run.new_run_dir(tmp_path)
    assert made.is_dir() and made.name not in taken and made.name.rsplit("-", 1)[0] in taken


def test_summary_keeps_why_test_examples_failed() -> None:
    n = 4
    failed = _payload("lmprog", "bootstrap", 0, [0] * n, ["a", "b", "a", "b"])
    failed["result"]["test"].update(errors=3, error_kinds={"TruncatedOutputError": 2, "ParseError": 1})
    plain = _payload("lmprog", "bootstrap", 1, [1] * n, ["a", "b", "a", "b"])
    seeds = report_v2.summarize([failed, plain], task_order=["trec"])["tasks"]["trec"]["methods"]["bootstrap"]
    first, second = seeds["lmprog"]["per_seed"]
    assert first["errors"] == 3 and first["error_kinds"] == {"TruncatedOutputError": 2, "ParseError": 1}
    assert "error_kinds" not in second  # cells stored before the kinds were recorded
