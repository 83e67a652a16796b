"""Benchmark the per-span overhead of lmprog tracing.

Run: ``python benchmarks/bench_trace.py [--calls 5000] [--lm-calls 500] [--repeats 20]``

Two workloads: a ``@traced`` no-op function, and an lm_function answered by ``ScriptedLM`` with
the cache off (so each call renders, "requests" and parses, but never leaves the process). Each is
timed in these modes, interleaved over many short repeats (best repeat kept, so that a noisy
shared machine still gives stable numbers; garbage collector on):

- ``untraced``: the baseline of the same run. For ``@traced`` the undecorated function; for the
  lm_function the call under ``configure(trace=False)``, the closest thing to no tracing code.
- ``no listener``: the default settings with no ``trace()`` block and no sink: no span is made.
- ``trace=False``: ``lmprog.configure(trace=False)``.
- ``trace()``: inside ``with lmprog.trace():``, every span recorded.
- ``otel`` and ``otel + trace()``: with ``lmprog.otel.enable_otel()`` on an SDK tracer provider
  whose exporter discards spans (measured when ``opentelemetry-sdk`` is installed).

The table gives microseconds per call, the overhead per span against the untraced baseline and
the ratio to it.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import lmprog
from lmprog import lm_function, settings, traced
from lmprog.testing import ScriptedLM


def noop(x: int) -> int:
    return x


traced_noop = traced(noop)


@lm_function
def echo(text: str) -> str:
    """Repeat the text."""


Mode = Callable[[], AbstractContextManager[Any]]


@contextmanager
def _configured(**values: Any) -> Iterator[None]:
    before = settings.current()
    lmprog.configure(**values)
    try:
        yield
    finally:
        lmprog.configure(**{k: getattr(before, k) for k in values})


@contextmanager
def _otel(collect: bool) -> Iterator[None]:
    from lmprog.otel import disable_otel, enable_otel

    enable_otel(_discarding_provider())
    try:
        with lmprog.trace() if collect else nullcontext():
            yield
    finally:
        disable_otel()


def _discarding_provider() -> Any:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            assert all(isinstance(s, ReadableSpan) for s in spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    return provider


def _otel_installed() -> bool:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Row:
    workload: str
    mode: str
    seconds: float  # per call, best repeat


def _time(fn: Callable[[Any], Any], arg: Any, calls: int, mode: Mode) -> float:
    with mode():
        start = time.perf_counter()
        for _ in range(calls):
            fn(arg)
        return (time.perf_counter() - start) / calls


def measure(
    workload: str, cases: dict[str, tuple[Callable[[Any], Any], Mode]], arg: Any, calls: int, repeats: int
) -> list[Row]:
    for fn, mode in cases.values():  # warm up: imports, prompt rendering caches, the OTel SDK
        _time(fn, arg, max(calls // 20, 10), mode)
    best = {name: float("inf") for name in cases}
    for _ in range(repeats):
        for name, (fn, mode) in cases.items():
            best[name] = min(best[name], _time(fn, arg, calls, mode))
    return [Row(workload, name, seconds) for name, seconds in best.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5_000, help="calls per repeat, @traced")
    parser.add_argument("--lm-calls", type=int, default=500, help="calls per repeat, lm_function")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    lmprog.configure(lm=ScriptedLM(lambda messages: "ok"), cache=False, load_prompts=False)
    otel = _otel_installed()
    modes: dict[str, Mode] = {
        "no listener": nullcontext,
        "trace=False": lambda: _configured(trace=False),
        "trace()": lmprog.trace,
    }
    if otel:
        modes["otel"] = lambda: _otel(collect=False)
        modes["otel + trace()"] = lambda: _otel(collect=True)

    started = time.perf_counter()
    rows = measure(
        "@traced no-op",
        {"untraced": (noop, nullcontext)} | {name: (traced_noop, mode) for name, mode in modes.items()},
        1,
        args.calls,
        args.repeats,
    )
    rows += measure(
        "lm_function",
        {"untraced": (echo, lambda: _configured(trace=False))}
        | {name: (echo, mode) for name, mode in modes.items()},
        "hello",
        args.lm_calls,
        args.repeats,
    )
    elapsed = time.perf_counter() - started

    versions = f"Python {platform.python_version()}, lmprog {lmprog.__version__}"
    if otel:
        from opentelemetry.sdk.version import __version__ as otel_version

        versions += f", opentelemetry-sdk {otel_version}"
    else:
        versions += ", opentelemetry-sdk not installed (otel rows skipped)"
    print(versions)
    print(f"{'workload':<15} {'mode':<15} {'µs/call':>9} {'µs/span overhead':>17} {'× untraced':>11}")
    baseline: dict[str, float] = {}
    for row in rows:
        base = baseline.setdefault(row.workload, row.seconds)
        overhead = (row.seconds - base) * 1e6
        print(
            f"{row.workload:<15} {row.mode:<15} {row.seconds * 1e6:9.2f} {overhead:17.2f} "
            f"{row.seconds / base:10.2f}x"
        )
    print(f"({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
