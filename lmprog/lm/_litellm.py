"""The litellm boundary: lazy import, request/response mapping, error translation, local provider.

Nothing here runs at ``import lmprog``: litellm is imported at the first real request. Every
litellm exception is translated here into :class:`~lmprog.errors.LMError` (or its retryable
subclass :class:`~lmprog.errors.TransientLMError`); nothing else in lmprog sees litellm types.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from lmprog.errors import LMError, LmprogError, TransientLMError
from lmprog.lm import _local as local
from lmprog.lm._secrets import is_secret_param
from lmprog.lm._secrets import secret_values as env_secret_values
from lmprog.lm._types import Completion, ConstraintKind, Messages, ToolCall
from lmprog.usage import Usage

logger = logging.getLogger("lmprog.lm")

LOCAL_PROVIDER = "lmprog-local"

_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
_load_lock = threading.Lock()
_litellm: Any = None


def load_litellm() -> Any:
    """Import litellm once, with its price list read locally and its own logging quiet."""
    global _litellm
    with _load_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            _quiet_litellm_loggers()  # before the import too: importing logs at DEBUG
            module: Any = importlib.import_module("litellm")
            module.suppress_debug_info = True
            _quiet_litellm_loggers()
            _litellm = module
        return _litellm


def _quiet_litellm_loggers() -> None:
    if "LITELLM_LOG" in os.environ:  # the user asked for litellm's logs explicitly
        return
    for name in _LITELLM_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def complete(model: str, messages: Messages, params: Mapping[str, Any]) -> Completion:
    """One ``litellm.completion`` call, mapped to a :class:`Completion` (raises ``LMError``)."""
    litellm = load_litellm()
    kwargs = _request_kwargs(litellm, model, messages, params)
    try:
        response = litellm.completion(**kwargs)
    except Exception as e:
        secrets = _secret_values(params)
        raise translate_error(e, model=model, secrets=secrets) from _cause(e, secrets)
    return _to_completion(litellm, model, response)


async def acomplete(model: str, messages: Messages, params: Mapping[str, Any]) -> Completion:
    """The async twin of :func:`complete` (``litellm.acompletion``)."""
    litellm = await asyncio.to_thread(load_litellm)
    kwargs = _request_kwargs(litellm, model, messages, params)
    try:
        response = await litellm.acompletion(**kwargs)
    except Exception as e:
        secrets = _secret_values(params)
        raise translate_error(e, model=model, secrets=secrets) from _cause(e, secrets)
    return _to_completion(litellm, model, response)


def supports_reasoning(model: str) -> bool:
    """Whether litellm knows ``model`` to reason natively (``litellm.supports_reasoning``); never
    for the embedded model."""
    return _litellm_says(model, "supports_reasoning", "reasons natively")


def constraint_kind(model: str) -> ConstraintKind | None:
    """``"grammar"`` for the embedded model (llama.cpp grammars), ``"json_schema"`` when
    ``litellm.supports_response_schema`` says the model takes a JSON schema, else None."""
    if local.is_local_model(model):
        return "grammar"
    try:
        supported = bool(load_litellm().supports_response_schema(model=model))
    except Exception:  # an unknown model or provider: no structured outputs
        logger.debug("%s: litellm cannot tell whether it supports response schemas", model)
        return None
    return "json_schema" if supported else None


def supports_logprobs(model: str) -> bool:
    """Whether litellm lists ``logprobs`` among ``model``'s supported parameters (False when it
    cannot tell)."""
    try:
        supported = load_litellm().get_supported_openai_params(model=model) or []
    except Exception:  # an unknown model or provider
        logger.debug("%s: litellm cannot tell whether it returns logprobs", model)
        return False
    return "logprobs" in supported


def supports_tools(model: str) -> bool:
    """Whether ``litellm.supports_function_calling`` says the model takes native tool calls
    (never the embedded model, which uses lmprog's text protocol with a grammar)."""
    return _litellm_says(model, "supports_function_calling", "supports function calling")


def _litellm_says(model: str, check: str, what: str) -> bool:
    """litellm's answer to one of its ``supports_*`` questions about ``model``: False for the
    embedded model, and for a model or provider litellm does not know."""
    if local.is_local_model(model):
        return False
    try:
        return bool(getattr(load_litellm(), check)(model=model))
    except Exception:  # an unknown model or provider
        logger.debug("%s: litellm cannot tell whether it %s", model, what)
        return False


def translate_error(error: BaseException, *, model: str, secrets: Iterable[str] = ()) -> LmprogError:
    """The lmprog error for a litellm (or provider) exception.

    Timeouts, rate limits (429, with ``retry_after`` from the ``Retry-After`` header), server
    errors (5xx) and connection failures become :class:`TransientLMError`; authentication, bad
    requests, unknown models and the rest :class:`LMError` with the status code. An lmprog error
    raised by the local provider is returned as is.
    """
    if isinstance(error, LmprogError):
        return error
    own = _provider_error_in(error)
    if own is not None:
        return own
    litellm = _litellm or sys.modules.get("litellm")
    status = getattr(error, "status_code", None)
    status = status if isinstance(status, int) and not isinstance(status, bool) else None
    message = _redact(str(error) or type(error).__name__, secrets)
    if status == 429 or (litellm is not None and isinstance(error, litellm.RateLimitError)):
        return TransientLMError(message, model=model, status_code=429, retry_after=retry_after_of(error))
    transient_types: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)
    if litellm is not None:
        transient_types += (
            litellm.Timeout,
            litellm.APIConnectionError,
            litellm.InternalServerError,
            litellm.ServiceUnavailableError,
            litellm.BadGatewayError,
        )
    if isinstance(error, transient_types) or (status is not None and (status >= 500 or status == 408)):
        return TransientLMError(message, model=model, status_code=status)
    return LMError(message, model=model, status_code=status)


def retry_after_of(error: BaseException) -> float | None:
    """Seconds from the ``Retry-After``/``retry-after-ms`` headers of an error's response, if any."""
    response = getattr(error, "response", None)
    for headers in (getattr(error, "headers", None), getattr(response, "headers", None)):
        if not headers:
            continue
        lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
        if "retry-after-ms" in lowered:
            try:
                return max(float(lowered["retry-after-ms"]) / 1000.0, 0.0)
            except ValueError:
                pass
        if "retry-after" in lowered:
            seconds = _parse_retry_after(lowered["retry-after"])
            if seconds is not None:
                return seconds
    return None


def _parse_retry_after(value: str) -> float | None:
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _request_kwargs(
    litellm: Any, model: str, messages: Messages, params: Mapping[str, Any]
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {**params, "messages": messages}
    if local.is_local_model(model):
        path = local.resolve_model_path(model)  # UsageError / MissingDependencyError, before litellm
        local.require_runtime()
        _register_local_provider(litellm)
        kwargs["model"] = f"{LOCAL_PROVIDER}/{path}"
    else:
        kwargs["model"] = model
        kwargs.setdefault("max_retries", 0)  # lmprog retries; the provider SDK must not retry too
    return kwargs


def _to_completion(litellm: Any, model: str, response: Any) -> Completion:
    choices = getattr(response, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    text = getattr(message, "content", None) or ""
    if not isinstance(text, str):
        raise TransientLMError(f"the model returned no text completion ({type(text).__name__})", model=model)
    usage = getattr(response, "usage", None)
    cost = 0.0
    if not local.is_local_model(model):
        try:
            cost = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # an unknown model has no price: count it as free rather than fail
            logger.debug("%s: no price known; counting cost 0", model)
    finish_reason = getattr(choices[0], "finish_reason", None)
    return Completion(
        reasoning=_reasoning_of(message),
        text=text,
        usage=Usage(
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost=cost,
        ),
        model=model,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        logprobs=_logprobs_of(choices[0]),
        tool_calls=_tool_calls_of(message),
    )


def _reasoning_of(message: Any) -> str | None:
    """A native-reasoning model's thoughts: litellm's ``reasoning_content``, else the text of its
    ``thinking_blocks`` (Anthropic); None when there are none."""
    content = getattr(message, "reasoning_content", None)
    if isinstance(content, str) and content.strip():
        return content
    blocks = getattr(message, "thinking_blocks", None) or []
    texts = [b.get("thinking") if isinstance(b, Mapping) else getattr(b, "thinking", None) for b in blocks]
    joined = "\n".join(t for t in texts if isinstance(t, str) and t)
    return joined or None


def _tool_calls_of(message: Any) -> tuple[ToolCall, ...]:
    """The native tool calls of a response message (OpenAI shape: ``id``, ``function.name``,
    ``function.arguments`` as JSON text)."""
    calls = getattr(message, "tool_calls", None) or []
    out = []
    for call in calls:
        function = getattr(call, "function", None)
        name = getattr(function, "name", None)
        if not isinstance(name, str):
            continue
        arguments = getattr(function, "arguments", None)
        text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        out.append(ToolCall(name, text, str(getattr(call, "id", "") or "")))
    return tuple(out)


def _logprobs_of(choice: Any) -> list[dict[str, Any]] | None:
    """The per-token logprobs of a choice as plain dicts (None when the response has none)."""
    raw = getattr(choice, "logprobs", None)
    content = raw.get("content") if isinstance(raw, Mapping) else getattr(raw, "content", None)
    if not content:
        return None
    return [_plain(token) for token in content]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    dump = getattr(value, "model_dump", None)
    return _plain(dump()) if callable(dump) else value


_register_lock = threading.Lock()


def _register_local_provider(litellm: Any) -> None:
    """Add the embedded model (``lmprog.lm._local``) to ``litellm.custom_provider_map`` (once per process)."""
    with _register_lock:
        if any(item.get("provider") == LOCAL_PROVIDER for item in litellm.custom_provider_map):
            return
        litellm.custom_provider_map.append(
            {"provider": LOCAL_PROVIDER, "custom_handler": _local_handler(litellm)}
        )


def _local_handler(litellm: Any) -> Any:
    class LocalLLM(litellm.CustomLLM):  # type: ignore[misc]  # litellm is untyped here
        """litellm's view of the embedded model (``_local``): the model name is the GGUF path."""

        def completion(self, *args: Any, **kwargs: Any) -> Any:
            return _fill_response(litellm, kwargs["model_response"], _local_chat(kwargs))

        async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
            out = await asyncio.to_thread(_local_chat, kwargs)
            return _fill_response(litellm, kwargs["model_response"], out)

    return LocalLLM()


class _ProviderFailure(Exception):
    """Carries an lmprog error raised by the local provider through litellm's exception wrapping."""

    def __init__(self, error: LmprogError) -> None:
        super().__init__(str(error))
        self.error = error


def _local_chat(kwargs: Mapping[str, Any]) -> local.LocalOutput:
    try:
        return local.chat(kwargs["model"], kwargs["messages"], kwargs.get("optional_params") or {})
    except LmprogError as e:
        raise _ProviderFailure(e) from e


def _fill_response(litellm: Any, response: Any, out: local.LocalOutput) -> Any:
    response.choices[0].message.content = out.text
    response.choices[0].finish_reason = out.finish_reason
    if out.logprobs is not None:
        response.choices[0].logprobs = {"content": out.logprobs}
    response.model = "local"
    response.usage = litellm.Usage(
        prompt_tokens=out.prompt_tokens,
        completion_tokens=out.completion_tokens,
        total_tokens=out.prompt_tokens + out.completion_tokens,
    )
    return response


def _provider_error_in(error: BaseException) -> LmprogError | None:
    """The lmprog error our local provider raised, if litellm wrapped one into ``error``.

    The walk never crosses an lmprog error: one found there belongs to an earlier call (the
    caller may be handling it), not to this request.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen or isinstance(current, LmprogError):
            continue
        seen.add(id(current))
        if isinstance(current, _ProviderFailure):
            return current.error
        nested = getattr(current, "original_exception", None)
        pending.extend(
            e for e in (nested, current.__cause__, current.__context__) if isinstance(e, BaseException)
        )
    return None


def _secret_values(params: Mapping[str, Any]) -> list[str]:
    """The credentials of a request: secret parameters (nested ones too, e.g. an ``Authorization``
    header) and credential-like environment variables, which providers read by themselves."""
    found = [value for name, value in _secret_items(params) if is_secret_param(name)]
    found += [part for value in found for part in value.split() if len(part) >= 8]  # "Bearer <token>"
    return [v for v in dict.fromkeys([*found, *env_secret_values()]) if len(v) >= 6]


def _secret_items(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for name, value in params.items():
        if isinstance(value, Mapping):
            nested = _secret_items(value)
            items += [(str(name), v) for _, v in nested] if is_secret_param(str(name)) else nested
        elif isinstance(value, str):
            items.append((str(name), value))
    return items


def _cause(error: BaseException, secrets: Iterable[str]) -> BaseException | None:
    """``error``, to chain to the translated error, unless its message (or that of an error it
    chains to) holds a secret: then None, so tracebacks and logs never print it."""
    texts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(texts) < 20:
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return None if any(secret in text for secret in secrets for text in texts) else error


def _redact(message: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # a longer secret may contain a shorter one
        message = message.replace(secret, "***")
    return message
