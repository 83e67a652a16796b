"""``@lm_function(tools=[...], max_steps=...)``: the model calls typed Python tools in a bounded loop,
through native tool calling (``ScriptedLM(native_tools=True)``) or the text protocol (a JSON line,
constrained by a grammar where the LM takes one). Scripted transcripts only: no model."""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path
from typing import Annotated, Any

import pydantic
import pytest
from gbnf_engine import GBNF

import lmprog
from lmprog import lm_function
from lmprog.errors import MaxStepsError, UsageError
from lmprog.format import grammar, tool_grammar
from lmprog.lm import ToolCall
from lmprog.optimize import optimize
from lmprog.source import signature_hash
from lmprog.testing import ScriptedLM

PRICES = {"apple": 0.5, "pear": 0.75}
CALLED: list[tuple[str, dict[str, Any]]] = []


def lookup_price(item: str) -> float:
    """The price of one item in dollars.

    Args:
        item: the item's name, in lower case.
    """
    CALLED.append(("lookup_price", {"item": item}))
    return PRICES[item]


def multiply(a: float, b: Annotated[int, pydantic.Field(ge=0)]) -> float:
    """The product of a price and a quantity."""
    CALLED.append(("multiply", {"a": a, "b": b}))
    return a * b


@lm_function(tools=[lookup_price, multiply], max_steps=3)
def total(question: str) -> float:
    """Answer the shopping question with a number of dollars."""


def call(name: str, **arguments: Any) -> str:
    """A tool call as the text protocol writes it."""
    return json.dumps({"tool": name, "arguments": arguments})


@pytest.fixture(autouse=True)
def _clear() -> None:
    CALLED.clear()


def run(lm: ScriptedLM, question: str = "What do 4 apples cost?") -> tuple[Any, lmprog.trace.Trace]:
    with lmprog.context(lm=lm, load_prompts=False), lmprog.trace() as t:
        return total(question), t


# -- the text protocol ---------------------------------------------------------------------------
def test_the_text_protocol_runs_the_tools_and_returns_the_answer() -> None:
    lm = ScriptedLM([call("lookup_price", item="apple"), call("multiply", a=0.5, b=4), "2.0"])
    value, _ = run(lm)
    assert value == 2.0
    assert CALLED == [("lookup_price", {"item": "apple"}), ("multiply", {"a": 0.5, "b": 4})]
    system = lm.calls[0].messages[0]["content"]
    assert '- lookup_price {"item": string}: The price of one item in dollars.' in system
    assert '{"tool": "<name>", "arguments": {...}}' in system
    assert system.endswith("Reply with a number only.")
    last = lm.calls[2].messages
    assert [m["role"] for m in last[-4:]] == ["assistant", "user", "assistant", "user"]
    assert last[-3]["content"] == "Result of lookup_price: 0.5"
    assert last[-1]["content"] == "Result of multiply: 2.0"


def test_every_tool_call_is_a_child_span_and_the_lm_span_keeps_the_transcript() -> None:
    lm = ScriptedLM([call("lookup_price", item="apple"), call("multiply", a=0.5, b="4"), "2"])
    _, t = run(lm)
    (root,) = t.roots
    assert root.kind == "lm" and root.output == 2.0
    tools = [s for s in root.children if s.kind == "tool"]
    assert [(s.name, s.inputs, s.output, s.error) for s in tools] == [
        ("lookup_price", {"item": "apple"}, 0.5, None),
        ("multiply", {"a": 0.5, "b": 4}, 2.0, None),  # validated: "4" became 4
    ]
    assert root.tool_calls == [
        {"tool": "lookup_price", "arguments": {"item": "apple"}, "result": 0.5},
        {"tool": "multiply", "arguments": {"a": 0.5, "b": 4}, "result": 2.0},
    ]
    assert root.requests == 3 and root.calls == 3  # every request of the loop is counted


def test_a_tool_error_goes_back_to_the_model() -> None:
    lm = ScriptedLM([call("lookup_price", item="kiwi"), call("lookup_price", item="pear"), "0.75"])
    value, t = run(lm)
    assert value == 0.75
    assert lm.calls[1].messages[-1]["content"] == "Error from lookup_price: KeyError: 'kiwi'"
    failed = [s for s in t.spans if s.kind == "tool" and s.error]
    assert [s.error for s in failed] == ["KeyError: 'kiwi'"]
    assert t.roots[0].tool_calls[0] == {
        "tool": "lookup_price",
        "arguments": {"item": "kiwi"},
        "error": "KeyError: 'kiwi'",
    }


def test_an_unknown_tool_or_bad_arguments_are_not_run_and_the_model_is_told() -> None:
    lm = ScriptedLM(
        [
            call("lookup", item="apple"),
            call("multiply", a=0.5, b=-2),  # b breaks its constraint (ge=0)
            call("multiply", a=0.5, c=2),
            "1",
        ]
    )
    value, t = run(lm)
    assert value == 1.0 and CALLED == []
    replies = [lm.calls[i].messages[-1]["content"] for i in (1, 2, 3)]
    assert replies[0] == "Error from lookup: there is no tool named 'lookup' (tools: lookup_price, multiply)"
    assert replies[1].startswith("Error from multiply: bad arguments:") and "0" in replies[1]
    assert replies[2].startswith("Error from multiply: bad arguments: unknown argument(s) c")
    assert next(s.qualname for s in t.spans if s.kind == "tool") == "<unknown tool>"


def test_arguments_are_read_as_json_only_never_evaluated() -> None:
    lm = ScriptedLM(['{"tool": "lookup_price", "arguments": {"item": __import__("os").getcwd()}}', "1"])
    value, _ = run(lm)
    assert value == 1.0 and CALLED == []  # not JSON: not a tool call, so the reply is the answer


def test_after_max_steps_a_tool_call_raises_with_the_transcript() -> None:
    lm = ScriptedLM([call("lookup_price", item="apple")] * 4)
    with pytest.raises(MaxStepsError) as caught:
        run(lm)
    error = caught.value
    assert error.max_steps == 3 and len(lm.calls) == 4
    assert len(CALLED) == 3  # the refused fourth call never ran
    assert [step["result"] for step in error.transcript] == [0.5, 0.5, 0.5]
    assert "max_steps=3" in str(error) and "lookup_price" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is MaxStepsError and copy.transcript == error.transcript and str(copy) == str(error)
    assert isinstance(error, lmprog.LmprogError)


def test_a_bad_final_answer_is_retried_inside_the_loop() -> None:
    lm = ScriptedLM([call("lookup_price", item="pear"), "a lot", "0.75"])
    value, _ = run(lm)
    assert value == 0.75
    retry = lm.calls[2].messages
    assert retry[-2] == {"role": "assistant", "content": "a lot"}
    assert "Result of lookup_price: 0.75" in [m["content"] for m in retry]


# -- constrained decoding --------------------------------------------------------------------------
def test_the_grammar_allows_a_call_of_a_named_tool_or_the_answer() -> None:
    lm = ScriptedLM([call("lookup_price", item="apple"), "0.5"], constraint="grammar")
    run(lm)
    g = GBNF(lm.calls[0].params["grammar"])
    assert g.matches('{"tool": "lookup_price", "arguments": {"item": "apple"}}')
    assert g.matches('{"tool": "multiply", "arguments": {"a": 0.5, "b": 4}}')
    assert g.matches("2.5")
    assert not g.matches('{"tool": "search", "arguments": {"item": "apple"}}')
    assert not g.matches('{"tool": "multiply", "arguments": {"a": "x", "b": 4}}')
    assert not g.matches("two dollars")


def test_the_turn_after_the_last_step_is_constrained_to_the_answer() -> None:
    lm = ScriptedLM([call("lookup_price", item="apple")] * 3 + ["1.5"], constraint="grammar")
    assert run(lm)[0] == 1.5
    grammars = [c.params["grammar"] for c in lm.calls]
    assert grammars[0] == grammars[2] != grammars[3]
    assert grammars[3] == grammar(total.wire_signature)


# -- native tool calling ---------------------------------------------------------------------------
def test_native_tool_calls_send_schemas_and_tool_messages() -> None:
    lm = ScriptedLM(
        [[ToolCall("lookup_price", {"item": "pear"}), ToolCall("lookup_price", {"item": "kiwi"})], "0.75"],
        native_tools=True,
    )
    value, t = run(lm)
    assert value == 0.75
    schemas = lm.calls[0].params["tools"]
    assert schemas[0] == {
        "type": "function",
        "function": {
            "name": "lookup_price",
            "description": "The price of one item in dollars.",
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string", "description": "the item's name, in lower case."}},
                "required": ["item"],
            },
        },
    }
    assert schemas[1]["function"]["parameters"]["properties"]["b"] == {"type": "integer", "minimum": 0}
    assert '{"tool": "<name>"' not in lm.calls[0].messages[0]["content"]  # no text protocol
    messages = lm.calls[1].messages
    assistant, first, second = messages[-3:]
    assert assistant["role"] == "assistant" and [c["function"]["name"] for c in assistant["tool_calls"]] == [
        "lookup_price",
        "lookup_price",
    ]
    assert first == {
        "role": "tool",
        "tool_call_id": assistant["tool_calls"][0]["id"],
        "content": "Result of lookup_price: 0.75",
    }
    assert second["content"] == "Error from lookup_price: KeyError: 'kiwi'"
    assert len(t.roots[0].tool_calls) == 2


def test_native_tool_calling_after_max_steps() -> None:
    lm = ScriptedLM([ToolCall("lookup_price", {"item": "apple"})] * 3 + ["1.5"], native_tools=True)
    assert run(lm)[0] == 1.5
    assert [c.params.get("tool_choice") for c in lm.calls] == [None, None, None, "none"]
    refused = ScriptedLM([ToolCall("lookup_price", {"item": "apple"})] * 4, native_tools=True)
    with pytest.raises(MaxStepsError):
        run(refused)


def test_a_format_retry_keeps_the_native_tool_call_messages() -> None:
    lm = ScriptedLM([ToolCall("lookup_price", '{"item": "pear"}'), "plenty", "0.75"], native_tools=True)
    assert run(lm)[0] == 0.75
    retried = lm.calls[2].messages
    assert any(m.get("tool_calls") for m in retried) and any(m["role"] == "tool" for m in retried)


def test_a_scripted_tool_call_needs_native_tools() -> None:
    with pytest.raises(UsageError, match="native_tools=True"):
        run(ScriptedLM([ToolCall("lookup_price", {"item": "pear"})]))


# -- cache and usage -------------------------------------------------------------------------------
@pytest.mark.parametrize("native", [False, True])
def test_the_cache_keeps_each_steps_completion(tmp_path: Path, native: bool) -> None:
    first: Any = ToolCall("lookup_price", {"item": "pear"}) if native else call("lookup_price", item="pear")
    lm = ScriptedLM([first, "0.75"], native_tools=native, cache=True)
    with lmprog.context(lm=lm, cache_dir=tmp_path, load_prompts=False), lmprog.trace() as t:
        assert total("pears?") == 0.75
        assert total("pears?") == 0.75  # every step from the cache; the tool runs again
    assert len(lm.calls) == 2 and len(CALLED) == 2
    second = t.roots[1]
    assert second.cache_hit and second.cache_hits == 2 and second.requests == 0
    assert second.tool_calls == t.roots[0].tool_calls


@lm_function
def describe(item: str) -> str:
    """Describe the item."""


def described_price(item: str) -> str:
    """The price of an item, with its description."""
    return f"{describe(item)}: {PRICES[item]}"


@lm_function(tools=[described_price])
def quote(item: str) -> str:
    """Quote the item's price."""


def test_a_tools_own_lm_calls_are_counted_in_their_own_span() -> None:
    lm = ScriptedLM([call("described_price", item="pear"), "a green pear", "0.75 for a green pear"])
    with lmprog.context(lm=lm, load_prompts=False), lmprog.trace() as t:
        assert quote("pear") == "0.75 for a green pear"
    (root,) = t.roots
    (tool,) = root.children
    (inner,) = tool.children
    assert (tool.kind, inner.kind, inner.name) == ("tool", "lm", "describe")
    assert root.requests == 2 and inner.requests == 1 and lm.usage.requests == 3


# -- async -----------------------------------------------------------------------------------------
async def stock(item: str) -> int:
    """How many of the item are in stock."""
    await asyncio.sleep(0)
    return {"apple": 3}.get(item, 0)


@lm_function(tools=[stock, lookup_price])
async def stock_value(item: str) -> float:
    """The value of the stock of an item."""


def test_an_async_function_awaits_async_tools_and_runs_sync_ones() -> None:
    lm = ScriptedLM([call("stock", item="apple"), call("lookup_price", item="apple"), "1.5"])
    with lmprog.context(lm=lm, load_prompts=False), lmprog.trace() as t:
        assert asyncio.run(stock_value("apple")) == 1.5
    assert [(s.name, s.output) for s in t.spans if s.kind == "tool"] == [("stock", 3), ("lookup_price", 0.5)]


def test_an_async_tool_needs_an_async_function() -> None:
    def value(item: str) -> float:
        """The value."""

    with pytest.raises(UsageError, match="tool stock is async"):
        lm_function(tools=[stock])(value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_steps": 0}, "max_steps must be an int >= 1"),
        ({"tools": [lookup_price, lookup_price]}, "two tools are named lookup_price"),
        ({"tools": lookup_price}, "tools must be a list"),
    ],
)
def test_bad_tool_options_are_refused(options: dict[str, Any], match: str) -> None:
    def value(item: str) -> float:
        """The value."""

    with pytest.raises(UsageError, match=match):
        lm_function(**options)(value)


# -- demos, hashes, pickling -------------------------------------------------------------------------
def test_bootstrapped_demos_keep_the_tool_calls_and_render_them() -> None:
    def answer(messages: list[dict[str, str]]) -> str:
        if messages[-1]["content"].startswith("question:"):
            return call("lookup_price", item="pear")
        return "0.75"

    rows = [{"question": "What does a pear cost?", "answer": 0.75}]
    with lmprog.context(lm=ScriptedLM(answer), load_prompts=False):
        result = optimize(
            total,
            rows,
            lambda ex, pred, trace=None: pred == ex["answer"],
            optimizer="bootstrap",
            save=False,
            apply=False,
            progress=False,
            max_rounds=1,
        )
    (demo,) = result.states[total].demos
    assert demo == {
        "question": "What does a pear cost?",
        "output": 0.75,
        "tool_calls": [{"tool": "lookup_price", "arguments": {"item": "pear"}, "result": 0.75}],
    }
    lm = ScriptedLM(["1"])
    with lmprog.context(lm=lm, load_prompts=False), lmprog.function.use_states({total: result.states[total]}):
        total("What does an apple cost?")
    contents = [m["content"] for m in lm.calls[0].messages[1:]]
    assert contents == [
        "question: What does a pear cost?",
        call("lookup_price", item="pear"),
        "Result of lookup_price: 0.75",
        "0.75",
        "question: What does an apple cost?",
    ]


def test_tools_are_part_of_the_signature_hash() -> None:
    def make(tools: list[Any]) -> Any:
        def ask(question: str) -> float:
            """Answer."""

        return lm_function(tools=tools)(ask)

    assert signature_hash(make([lookup_price])) != signature_hash(make([multiply]))
    assert signature_hash(make([])) != signature_hash(make([lookup_price]))


def test_an_lm_function_with_tools_pickles_by_value_with_its_tools() -> None:
    def ask(question: str) -> float:
        """Answer."""

    fn = lm_function(tools=[lookup_price], max_steps=2)(ask)
    import cloudpickle  # what joblib's process backends use

    copy = pickle.loads(cloudpickle.dumps(fn))
    assert [t.name for t in copy.tools] == ["lookup_price"] and copy.max_steps == 2


def test_a_cassette_records_and_replays_native_tool_calls(tmp_path: Path) -> None:
    from lmprog.testing._cassette import Cassette

    path = tmp_path / "cassette.yaml"
    recorder = Cassette(path, "t", mode="record")
    lm = ScriptedLM([ToolCall("lookup_price", {"item": "pear"}, id="c1"), "0.75"], native_tools=True)
    with lmprog.context(lm=lm, load_prompts=False), recorder.activate():
        assert total("pears?") == 0.75
    recorder.save()
    player = Cassette(path, "t")
    offline = ScriptedLM([], native_tools=True)  # would fail if asked: every answer comes from the file
    with lmprog.context(lm=offline, load_prompts=False), player.activate(), lmprog.trace() as t:
        assert total("pears?") == 0.75
    assert t.roots[0].tool_calls == [{"tool": "lookup_price", "arguments": {"item": "pear"}, "result": 0.75}]
    assert not player.misses


@lm_function(tools=[lookup_price, multiply], tool_first=True, max_steps=2)
def total_first(question: str) -> float:
    """Answer the shopping question with a number of dollars."""


def test_tool_first_allows_only_a_call_in_the_first_reply() -> None:
    lm = ScriptedLM([call("lookup_price", item="pear"), "0.75"], constraint="grammar")
    with lmprog.context(lm=lm, load_prompts=False):
        assert total_first("pears?") == 0.75
    first, second = (GBNF(c.params["grammar"]) for c in lm.calls)
    assert first.matches(call("multiply", a=1.5, b=2))
    assert not first.matches("0.75")
    assert second.matches("0.75") and second.matches(call("lookup_price", item="apple"))


def test_tool_first_natively_requires_a_tool_call() -> None:
    lm = ScriptedLM([ToolCall("lookup_price", {"item": "pear"}), "0.75"], native_tools=True)
    with lmprog.context(lm=lm, load_prompts=False):
        assert total_first("pears?") == 0.75
    assert [c.params.get("tool_choice") for c in lm.calls] == ["required", None]


def test_tool_first_needs_tools() -> None:
    def ask(question: str) -> float:
        """Answer."""

    with pytest.raises(UsageError, match="tool_first=True needs tools"):
        lm_function(tool_first=True)(ask)


def test_litellm_tool_calls_become_the_completions_tool_calls() -> None:
    from types import SimpleNamespace

    from lmprog.lm import _litellm

    function = SimpleNamespace(name="lookup_price", arguments='{"item": "pear"}')
    message = SimpleNamespace(content=None, tool_calls=[SimpleNamespace(id="call_9", function=function)])
    response = SimpleNamespace(
        choices=[SimpleNamespace(message=message, finish_reason="tool_calls", logprobs=None)],
        usage=SimpleNamespace(prompt_tokens=5, completion_tokens=7),
    )
    completion = _litellm._to_completion(None, "local", response)
    assert completion.text == "" and completion.finish_reason == "tool_calls"
    assert completion.tool_calls == (ToolCall("lookup_price", '{"item": "pear"}', "call_9"),)
    assert _litellm.supports_tools("local") is False


def test_the_reflective_optimizer_sees_the_tool_calls_of_a_run() -> None:
    from lmprog.optimize.reflect_prompt import describe_run

    lm = ScriptedLM([call("lookup_price", item="kiwi"), call("lookup_price", item="pear"), "0.75"])
    rows = [{"question": "What does a pear cost?", "answer": 0.75}]
    with lmprog.context(lm=lm, load_prompts=False):
        result = lmprog.evaluate(total, rows, lambda ex, pred: pred == ex["answer"], threads=1)
    text = describe_run(total, 1, result.results[0])
    assert """  tool call: lookup_price {"item": "kiwi"} -> error KeyError: 'kiwi'""" in text
    assert '  tool call: lookup_price {"item": "pear"} -> 0.75' in text


def test_the_grammar_gives_each_tool_its_own_arguments() -> None:
    # regression: a tool's arguments record was freed while the grammar was built, and the next
    # tool's record could take its id, hence its rule (about half of the builds went wrong)
    def a(x: str) -> int:
        """A."""

    def b(n: int, m: bool) -> int:
        """B."""

    def c(q: list[int]) -> int:
        """C."""

    tools = [lmprog.Tool(f).signature for f in (a, b, c)]
    for _ in range(30):
        g = GBNF(tool_grammar(total.wire_signature, tools) or "")
        assert g.matches('{"tool": "a", "arguments": {"x": "pear"}}')
        assert g.matches('{"tool": "b", "arguments": {"n": 1, "m": true}}')
        assert g.matches('{"tool": "c", "arguments": {"q": [1, 2]}}')
        assert not g.matches('{"tool": "b", "arguments": {"x": "pear"}}')


def test_a_json_schema_constrains_only_the_answer_only_turn() -> None:
    lm = ScriptedLM([call("lookup_price", item="pear")] * 3 + ['{"output": 2.25}'], constraint="json_schema")
    assert run(lm)[0] == 2.25
    sent = ["response_format" in c.params for c in lm.calls]
    assert sent == [False, False, False, True]  # a call could not fit the answer's schema


# -- streaming -------------------------------------------------------------------------------------


def test_a_stream_runs_the_tools_then_restarts_for_the_answer() -> None:
    lm = ScriptedLM([call("lookup_price", item="apple"), call("multiply", a=0.5, b=4), "2.0"])
    with lmprog.context(lm=lm, load_prompts=False), lmprog.trace() as t:
        events = list(total.stream("What do 4 apples cost?"))
    assert events[-1] == lmprog.FinalOutput(2.0)
    assert [e.attempt for e in events if isinstance(e, lmprog.Restart)] == [2, 3]
    assert CALLED == [("lookup_price", {"item": "apple"}), ("multiply", {"a": 0.5, "b": 4})]
    assert "Result of lookup_price: 0.5" in json.dumps(lm.calls[1].messages)
    (root,) = t.roots
    assert [c.kind for c in root.children] == ["tool", "tool"] and root.requests == 3


def test_a_streamed_tools_own_lm_calls_are_counted_in_their_own_span() -> None:
    lm = ScriptedLM([call("described_price", item="pear"), "a green pear", "0.75 for a green pear"])
    with lmprog.context(lm=lm, load_prompts=False), lmprog.trace() as t:
        events = list(quote.stream("pear"))
    assert events[-1] == lmprog.FinalOutput("0.75 for a green pear")
    (root,) = t.roots
    (tool,) = root.children
    (inner,) = tool.children
    assert root.requests == 2 and inner.requests == 1 and lm.usage.requests == 3


def test_an_async_stream_runs_the_tools_too() -> None:
    lm = ScriptedLM([call("lookup_price", item="pear"), "0.75"])

    async def collect() -> list[Any]:
        return [event async for event in total.astream("What does a pear cost?")]

    with lmprog.context(lm=lm, load_prompts=False):
        events = asyncio.run(collect())
    assert events[-1] == lmprog.FinalOutput(0.75) and CALLED == [("lookup_price", {"item": "pear"})]
