"""How long a planned run will take, extrapolated from cells already measured (any configuration).

From each measured cell: seconds per LM request (optimization + test wall time over requests)
and requests per test example (DSPy's parse retries make it more than the program's steps). A
planned cell is expected to make ``budget + n_test * requests_per_example`` requests at the
measured seconds per request of its framework on the same task, else of its framework on any
task of the same kind (classification, HotPotQA, GSM8K), else of its framework anywhere.

Pure: cell payloads in, seconds out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

KINDS = {"hotpotqa": "multihop", "gsm8k": "reasoning"}


def kind(task: str) -> str:
    return KINDS.get(task, "classification")


def _lm(result: Mapping[str, Any], phase: str, clock: str) -> tuple[float, float]:
    part = result.get(phase) or {}
    return float((part.get("lm") or {}).get("requests", 0)), float(part.get(clock, 0.0))


def rates(
    payloads: Iterable[Mapping[str, Any]], clock: str = "seconds"
) -> dict[tuple[str, str], dict[str, float]]:
    """Per (framework, task), (framework, kind) and (framework, "*"): seconds per request and
    test requests per test example, pooled over the measured cells.

    ``clock="seconds"`` uses wall time; ``"cpu_seconds"`` the worker's CPU time (what a worker
    with a core of its own would take: the measure to extrapolate from on a shared machine,
    where wall time depends on what else runs). Cells without that clock are left out."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for p in payloads:
        res = p["result"]
        if clock not in res["test"]:
            continue
        opt_req, opt_s = _lm(res, "optimize", clock)
        test_req, test_s = _lm(res, "test", clock)
        n = float(res["test"].get("n", 0))
        for key in ((p["framework"], p["task"]), (p["framework"], kind(p["task"])), (p["framework"], "*")):
            s = sums[key]
            s[0] += opt_req + test_req
            s[1] += opt_s + test_s
            s[2] += test_req
            s[3] += n
    return {
        key: {"seconds_per_request": s[1] / s[0], "requests_per_example": s[2] / s[3] if s[3] else 1.0}
        for key, s in sums.items()
        if s[0] > 0
    }


def cell_seconds(cell: Any, table: Mapping[tuple[str, str], Mapping[str, float]]) -> float | None:
    """Expected seconds of one planned cell (``cell.settings`` has ``budget`` and ``sizes``)."""
    for key in ((cell.framework, cell.task), (cell.framework, kind(cell.task)), (cell.framework, "*")):
        rate = table.get(key)
        if rate is not None:
            requests = cell.settings["budget"] + cell.settings["sizes"][2] * rate["requests_per_example"]
            return requests * rate["seconds_per_request"]
    return None


def run_seconds(
    cells: Iterable[Any], table: Mapping[tuple[str, str], Mapping[str, float]], processes: int = 2
) -> dict[str, float]:
    """Expected seconds per framework, and the wall time with ``processes`` lanes at once
    (:func:`lanes`: the longest lane's total)."""
    cells = list(cells)
    per_fw: dict[str, float] = defaultdict(float)
    for cell in cells:
        per_fw[cell.framework] += cell_seconds(cell, table) or 0.0
    loads = [sum(cell_seconds(c, table) or 0.0 for c in lane) for lane in lanes(cells, table, processes)]
    return {**per_fw, "wall": max(loads, default=0.0)}


# CPU seconds per request and test requests per example measured on the smoke run of 2026-12-01
# (SmolLM2-135M, one llama.cpp thread; see README): the default for balancing lanes.
DEFAULT_RATES: dict[tuple[str, str], dict[str, float]] = {
    ("lmprog", "classification"): {"seconds_per_request": 0.27, "requests_per_example": 1.0},
    ("dspy", "classification"): {"seconds_per_request": 1.27, "requests_per_example": 2.0},
    ("lmprog", "multihop"): {"seconds_per_request": 1.39, "requests_per_example": 2.5},
    ("dspy", "multihop"): {"seconds_per_request": 2.79, "requests_per_example": 3.57},
    ("lmprog", "reasoning"): {"seconds_per_request": 3.99, "requests_per_example": 1.75},
    ("dspy", "reasoning"): {"seconds_per_request": 2.98, "requests_per_example": 1.83},
}


def lanes(
    cells: list[Any], table: Mapping[tuple[str, str], Mapping[str, float]], count: int
) -> list[list[Any]]:
    """Split ``cells`` into ``count`` lanes of about equal expected time (greedy, longest first),
    each lane's cells grouped by framework (one worker process per framework group, run one
    after the other; the lanes run at once). Unknown cells count one second."""
    order = sorted(cells, key=lambda c: -(cell_seconds(c, table) or 1.0))
    loads = [0.0] * count
    out: list[list[Any]] = [[] for _ in range(count)]
    for cell in order:
        i = loads.index(min(loads))
        out[i].append(cell)
        loads[i] += cell_seconds(cell, table) or 1.0
    position = {id(c): n for n, c in enumerate(cells)}
    return [sorted(lane, key=lambda c: (c.framework != "lmprog", position[id(c)])) for lane in out]
