"""The tool loop of one lm_function call: read each completion as tool calls or the answer, run
the calls, and continue the conversation with their results.

A completion asks for tools through the provider's native tool calling
(:attr:`~lmprog.lm.Completion.tool_calls`) or through the text protocol (one line of JSON,
``{"tool": ..., "arguments": {...}}``, :func:`~lmprog.format.read_tool_call`); anything else is
the answer, read by the lm_function as usual. Each turn of tool calls is one *step*. The model
may take ``max_steps`` of them; the request after the last one is constrained to the answer
where the LM takes a constraint (the answer grammar; ``tool_choice="none"`` natively), and a tool
call there raises :class:`~lmprog.errors.MaxStepsError` with the transcript, without running it.

A call of a tool that does not exist or with arguments that do not validate is not run: the
problem goes back to the model as the call's result, like an exception raised by the tool
(:mod:`lmprog.tools._tool`), and the step counts. The driver (the lm_function's sync or async
call) runs the calls; this class only decides and keeps the record: :attr:`ToolLoop.transcript`,
what the lm span and bootstrapped demos keep.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lmprog.errors import MaxStepsError
from lmprog.format import read_tool_call, to_jsonable, tool_result_text
from lmprog.lm import Completion
from lmprog.tools._tool import Outcome, Tool, unknown_tool

__all__ = ["Request", "ToolLoop"]


@dataclass(frozen=True)
class Request:
    """One tool call the model asked for: ``arguments`` as it wrote them (JSON text from native
    tool calling, a decoded value from the text protocol); ``id`` the native call's id ("" for
    the text protocol)."""

    name: str
    arguments: Any
    id: str = ""


class ToolLoop:
    """The tool-calling state of one lm_function call (see the module docs).

    Args:
        tools: the tools the model may call.
        max_steps: how many turns of tool calls the model may take (>= 1).
        native: the LM takes native tool calling (else the text protocol).
        function: the lm_function's qualified name (for errors).
    """

    def __init__(self, tools: Sequence[Tool], max_steps: int, *, native: bool, function: str) -> None:
        self.tools: dict[str, Tool] = {tool.name: tool for tool in tools}
        self.max_steps = max_steps
        self.native = native
        self.function = function
        self.turns = 0
        self.transcript: list[dict[str, Any]] = []

    @property
    def answer_due(self) -> bool:
        """The steps are spent: the next reply must be the answer."""
        return self.turns >= self.max_steps

    def requests(self, completion: Completion) -> list[Request]:
        """The tool calls ``completion`` asks for; empty when it is the answer. Raises
        MaxStepsError when it asks for any after the last step."""
        if completion.tool_calls:
            found = [
                Request(call.name, call.arguments, call.id or f"call_{self.turns + 1}_{index}")
                for index, call in enumerate(completion.tool_calls, 1)
            ]
        else:
            read = read_tool_call(completion.text)
            found = [] if read is None else [Request(read[0], read[1])]
        if found and self.answer_due:
            raise MaxStepsError(self.function, self.max_steps, self.transcript, _shown(completion))
        return found

    def call(self, request: Request) -> Outcome:
        """Run one request (a ``"tool"`` span; an unknown tool or bad arguments make an error)."""
        tool = self.tools.get(request.name)
        return (
            unknown_tool(request.name, request.arguments, self.tools)
            if tool is None
            else tool.call(request.arguments)
        )

    async def acall(self, request: Request) -> Outcome:
        """The async twin of :meth:`call`."""
        tool = self.tools.get(request.name)
        if tool is None:
            return unknown_tool(request.name, request.arguments, self.tools)
        return await tool.acall(request.arguments)

    def continued(
        self,
        messages: Sequence[Mapping[str, Any]],
        completion: Completion,
        requests: Sequence[Request],
        outcomes: Sequence[Outcome],
    ) -> list[dict[str, Any]]:
        """The conversation after a turn of tool calls: ``messages``, the model's calls and the
        results, in the protocol the calls came in. Counts the step and records the transcript."""
        self.turns += 1
        steps = [_jsonable_step(outcome) for outcome in outcomes]
        self.transcript.extend(steps)
        out = [dict(m) for m in messages]
        if all(request.id for request in requests):  # native tool calling
            calls = [
                {
                    "id": r.id,
                    "type": "function",
                    "function": {"name": r.name, "arguments": _text(r.arguments)},
                }
                for r in requests
            ]
            out.append({"role": "assistant", "content": completion.text, "tool_calls": calls})
            for request, step in zip(requests, steps, strict=True):
                content = tool_result_text(request.name, step.get("result"), error=step.get("error"))
                out.append({"role": "tool", "tool_call_id": request.id, "content": content})
            return out
        out.append({"role": "assistant", "content": completion.text.strip()})
        results = [tool_result_text(s["tool"], s.get("result"), error=s.get("error")) for s in steps]
        out.append({"role": "user", "content": "\n".join(results)})
        return out


def _jsonable_step(outcome: Outcome) -> dict[str, Any]:
    step = outcome.step()
    arguments = step["arguments"]
    if isinstance(arguments, str):  # native arguments that did not validate: keep what was sent
        step["arguments"] = arguments
    else:
        step["arguments"] = to_jsonable(arguments)
    if "result" in step:
        step["result"] = to_jsonable(step["result"])
    return step


def _text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(to_jsonable(arguments), ensure_ascii=False)


def _shown(completion: Completion) -> str:
    if completion.tool_calls:
        return "; ".join(f"{c.name}({c.arguments})" for c in completion.tool_calls)
    return completion.text
