"""Cassettes: the LM calls of one test, recorded once against a real model and replayed offline.

A cassette is a YAML file (block scalars, so a re-recording diffs line by line) listing each
distinct provider request: the cache key of (model, messages, parameters), the function that made
it, the model, the parameters, the messages, and the responses in the order they came. Requests
are found again by their key, so replay is exact; a request made several times is answered with
its recorded responses in order (the last one repeats). Entries are sorted, so recording the same
calls again gives the same file. Secrets never reach the file (see :func:`lmprog.lm.redact`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmprog.errors import LmprogError, PromptFileError
from lmprog.lm import Completion, InterceptedRequest, ToolCall, intercept_requests, redact
from lmprog.promptfile import atomic_write_text, dump_yaml, read_yaml
from lmprog.trace import current_span, trace
from lmprog.usage import Usage

CASSETTE_VERSION = 1
_HEADER = (
    "# lmprog cassette: the LM calls of {test}, replayed offline by pytest.\n"
    "# Re-record with `pytest --lmprog-record`; review and commit it with the test.\n"
)


class CassetteMissError(LmprogError):
    """A test made an LM call that its cassette does not hold (never retried)."""


@dataclass
class Entry:
    """One distinct request and its responses, in the order they were received."""

    key: str
    function: str
    model: str
    params: dict[str, Any]
    messages: list[dict[str, str]]
    responses: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "model": self.model,
            "key": self.key,
            "params": dict(sorted(self.params.items())),
            "messages": self.messages,
            "responses": self.responses,
        }


class Cassette:
    """The recorded calls of one test. ``mode`` is ``"replay"`` (answer from the file, never call
    a provider) or ``"record"`` (call the provider, keep what it answers, :meth:`save` at the end).
    Thread-safe: programs may call LMs from many threads."""

    def __init__(self, path: Path, test: str, mode: str = "replay") -> None:
        if mode not in ("replay", "record"):
            raise ValueError(f"mode must be 'replay' or 'record', got {mode!r}")
        self.path = path
        self.test = test
        self.mode = mode
        self.entries: dict[str, Entry] = {}
        self.misses: list[str] = []
        self.exists = False
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()
        if mode == "replay" and path.exists():
            self._load()

    # -- the interception hook -----------------------------------------------------------------
    @contextmanager
    def activate(self) -> Iterator[Cassette]:
        """Route every LM request made inside the block, in any thread, through this cassette."""
        with trace(), intercept_requests(self._handle):  # the trace names the calling function
            yield self

    def _handle(self, request: InterceptedRequest, send: Callable[[], Completion]) -> Completion:
        if self.mode == "record":
            completion = send()
            self._record(request, completion)
            return completion
        return self._replay(request)

    def _record(self, request: InterceptedRequest, completion: Completion) -> None:
        response = {
            "text": completion.text,
            "model": completion.model or request.lm.model,
            "prompt_tokens": completion.usage.prompt_tokens,
            "completion_tokens": completion.usage.completion_tokens,
            "cost": completion.usage.cost,
        }
        if completion.finish_reason is not None:
            response["finish_reason"] = completion.finish_reason
        if completion.tool_calls:
            response["tool_calls"] = [call.to_dict() for call in completion.tool_calls]
        with self._lock:
            entry = self.entries.get(request.key)
            if entry is None:
                entry = self.entries[request.key] = Entry(
                    request.key, _calling_function(), request.lm.model, dict(request.params), request.messages
                )
            entry.responses.append(response)

    def _replay(self, request: InterceptedRequest) -> Completion:
        with self._lock:
            entry = self.entries.get(request.key)
            if entry is None or not entry.responses:
                message = self._describe_miss(request)
                self.misses.append(message)
                raise CassetteMissError(message)
            index = self._used.get(request.key, 0)
            self._used[request.key] = index + 1
            response = entry.responses[min(index, len(entry.responses) - 1)]
        return Completion(
            text=str(response.get("text", "")),
            usage=Usage(
                prompt_tokens=int(response.get("prompt_tokens") or 0),
                completion_tokens=int(response.get("completion_tokens") or 0),
                cost=float(response.get("cost") or 0.0),
            ),
            model=str(response.get("model") or request.lm.model),
            finish_reason=reason if isinstance(reason := response.get("finish_reason"), str) else None,
            tool_calls=tuple(
                ToolCall(str(c.get("name", "")), str(c.get("arguments", "{}")), str(c.get("id", "")))
                for c in response.get("tool_calls") or ()
                if isinstance(c, dict)
            ),
        )

    def _describe_miss(self, request: InterceptedRequest) -> str:
        user = next((m["content"] for m in request.messages if m.get("role") == "user"), "")
        excerpt = " ".join(user.split())
        excerpt = excerpt if len(excerpt) <= 120 else excerpt[:117] + "..."
        lines = [
            f"{self.test}: LM call not in the cassette {self.path}",
            f"  function: {_calling_function()}, model: {request.lm.model}",
            f"  first user message: {excerpt!r}",
        ]
        same = [e for e in self.entries.values() if e.messages == request.messages]
        if not self.exists:
            lines.append("  the cassette does not exist yet")
        elif same:
            e = same[0]
            lines.append(
                f"  the cassette has these messages for model {e.model!r} with params {e.params}; "
                f"this call used model {request.lm.model!r} with params "
                f"{dict(sorted(request.params.items()))}"
            )
        else:
            lines.append(f"  the cassette holds {len(self.entries)} other call(s)")
        lines.append("  record it with: pytest --lmprog-record " + self.test)
        return "\n".join(lines)

    # -- the file --------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            doc = read_yaml(self.path, what="cassette")
        except PromptFileError as e:
            raise CassetteMissError(str(e)) from e
        calls = doc.get("calls") or []
        if doc.get("version") != CASSETTE_VERSION or not isinstance(calls, list):
            raise CassetteMissError(f"{self.path}: not an lmprog cassette (version {CASSETTE_VERSION})")
        for raw in calls:
            if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
                raise CassetteMissError(f"{self.path}: every call needs a 'key'")
            entry = Entry(
                key=raw["key"],
                function=str(raw.get("function", "")),
                model=str(raw.get("model", "")),
                params=dict(raw.get("params") or {}),
                messages=list(raw.get("messages") or []),
                responses=list(raw.get("responses") or []),
            )
            self.entries[entry.key] = entry
        self.exists = True

    def render(self) -> str:
        """The file text: entries sorted by function, first user message and key."""

        def order(e: Entry) -> tuple[str, str, str]:
            user = next((m.get("content", "") for m in e.messages if m.get("role") == "user"), "")
            return (e.function, user, e.key)

        with self._lock:
            calls = [e.to_dict() for e in sorted(self.entries.values(), key=order)]
        doc = {"version": CASSETTE_VERSION, "test": self.test, "calls": calls}
        return _HEADER.format(test=self.test) + dump_yaml(redact(doc))

    def save(self) -> Path:
        """Write the cassette atomically (an unchanged one is left untouched)."""
        return atomic_write_text(self.path, self.render())


def _calling_function() -> str:
    """The lm_function whose call is in flight here (from the current trace span), if known."""
    span = current_span()
    return span.qualname if span is not None and span.kind == "lm" else "?"
