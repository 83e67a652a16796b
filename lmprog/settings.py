"""Global settings: ``configure()`` for the process, ``context()`` for a block (contextvars).

``configure()`` changes the process-wide defaults seen by every thread. ``context()`` overrides
them for the current context only: asyncio tasks created inside inherit the override, other
threads do not, except the worker threads lmprog starts itself (evaluation pools), which run in a
copy of the caller's context (see :func:`run_in_context`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from lmprog.errors import UsageError

T = TypeVar("T")


def _default_cache_dir() -> Path:
    env = os.environ.get("LMPROG_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lmprog"


@dataclass(frozen=True)
class Settings:
    """The effective settings. Read them with :func:`current`.

    - ``lm``: the LM used by lm_functions that name none: a model string (``"local"``,
      ``"openai/gpt-4o-mini"``...) or an ``LM`` object. ``None`` picks a default (see
      ``lmprog.lm.resolve_lm``, which checks the value: settings sit below the LM clients and
      hold it as a plain object).
    - ``cache``: use the persistent response cache. ``cache_dir``: where it lives.
    - ``trace``: record spans for lm_functions and ``@traced`` functions.
    - ``prompt_dir``: where prompt files are written and read; ``None`` = next to the user's module.
    - ``load_prompts``: whether lm_functions load their prompt file at call time.
    - ``temperature``, ``max_tokens``: default sampling parameters (an LM's own defaults and a
      function's ``temperature`` take precedence).
    - ``rollout``: a number that makes cache keys distinct without changing the request, so that
      repeated samples at a temperature above 0 are drawn anew (optimizers set it).
    - ``constrain``: constrained decoding (see ``lmprog.format``): a grammar for the embedded
      model, a JSON schema for providers with structured outputs. ``False`` sends neither (an
      lm_function's own ``constrain`` takes precedence).
    """

    lm: object = None
    cache: bool = True
    cache_dir: Path = dataclasses.field(default_factory=_default_cache_dir)
    trace: bool = True
    prompt_dir: Path | None = None
    load_prompts: bool = True
    temperature: float = 0.0
    max_tokens: int = 512
    rollout: int | None = None
    constrain: bool = True


_FIELDS = {f.name for f in fields(Settings)}
_global = Settings()
_global_lock = threading.Lock()
_override: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "lmprog_settings", default=None
)


def _check(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - _FIELDS
    if unknown:
        raise UsageError(f"unknown setting(s) {sorted(unknown)}; known settings: {sorted(_FIELDS)}")
    out = dict(kwargs)
    for key in ("cache_dir", "prompt_dir"):
        if out.get(key) is not None:
            out[key] = Path(out[key]).expanduser()
    return out


def configure(**kwargs: Any) -> None:
    """Change the process-wide settings.

    The settings are the fields of :class:`Settings` (``lm``, ``cache``, ``cache_dir``, ``trace``,
    ``prompt_dir``, ``load_prompts``, ``temperature``, ``max_tokens``, ``rollout``,
    ``constrain``); the ones not given keep their value. A :func:`context` block overrides them
    for its own context only.

    Args:
        **kwargs: the settings to change; paths may be strings (``~`` is expanded).

    Raises:
        UsageError: a name is not a setting (the message lists the known ones).

    Example:
        >>> import lmprog
        >>> lmprog.configure(lm="local", cache=False)
    """
    global _global
    values = _check(kwargs)
    with _global_lock:
        _global = dataclasses.replace(_global, **values)


def reset() -> None:
    """Back to the built-in defaults (tests use this)."""
    global _global
    with _global_lock:
        _global = Settings()


def current() -> Settings:
    """The settings in force here: the global ones with this context's overrides on top."""
    override = _override.get()
    if not override:
        return _global
    return dataclasses.replace(_global, **override)


@contextmanager
def context(**kwargs: Any) -> Iterator[Settings]:
    """Override settings inside a ``with`` block, for this context only.

    The override holds for the thread or asyncio task that entered the block, the tasks it
    creates and the worker threads lmprog starts from it; other threads keep the global settings
    (:func:`configure`). Blocks nest: an inner one overrides the outer one's values.

    Args:
        **kwargs: the settings to override (the fields of :class:`Settings`).

    Yields:
        The settings in force inside the block.

    Raises:
        UsageError: a name is not a setting.

    Example:
        >>> import lmprog
        >>> from lmprog.testing import ScriptedLM
        >>> with lmprog.context(lm=ScriptedLM(["billing"]), cache=False) as settings:
        ...     settings.cache
        False
    """
    values = _check(kwargs)
    merged = {**(_override.get() or {}), **values}
    token = _override.set(merged)
    try:
        yield current()
    finally:
        _override.reset(token)


def run_in_context(ctx: contextvars.Context, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` inside a copy of ``ctx`` (settings, current span) in a worker thread."""
    return ctx.copy().run(fn, *args, **kwargs)
