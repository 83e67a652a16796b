"""Joblib backends for ``evaluate``: whether one runs tasks in this process (threads) or in
others, whether it streams results, and what workers in other processes need: the caller's
settings (checked to pickle, the LM included) and exceptions that survive the trip back."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from typing import Any

from lmprog import settings
from lmprog.errors import UsageError


def uses_threads(backend: Any) -> bool:
    """Whether joblib ``backend`` runs tasks in this process (threads or sequentially)."""
    from joblib.parallel import BACKENDS, get_active_backend

    if backend is None:
        active, _ = get_active_backend(prefer="threads")
        return bool(getattr(active, "uses_threads", False))
    if isinstance(backend, str):
        return bool(getattr(BACKENDS.get(backend), "uses_threads", False))
    return bool(getattr(backend, "uses_threads", False))


def streams(backend: Any) -> bool:
    """Whether joblib ``backend`` can return results as they finish (multiprocessing cannot)."""
    from joblib.parallel import BACKENDS, get_active_backend

    if backend is None:
        backend, _ = get_active_backend(prefer="threads")
    elif isinstance(backend, str):
        backend = BACKENDS.get(backend)
    return bool(getattr(backend, "supports_return_generator", True))


def settings_snapshot(backend: Any) -> dict[str, Any]:
    """The caller's settings, for workers in other processes; an LM that cannot be sent there is
    a UsageError (the workers would otherwise call another model)."""
    dumps = _process_pickler()
    current = settings.current()
    values = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
    for name, value in values.items():
        try:
            dumps(value)
        except Exception as e:
            raise UsageError(
                f"evaluate(backend={backend!r}): the setting {name}={value!r} cannot be sent to worker "
                f"processes ({type(e).__name__}: {e}); use a thread backend (the default, "
                '"threading" or "sequential"), or a setting that pickles'
            ) from e
    return values


def _process_pickler() -> Callable[[Any], bytes]:
    """How joblib's process backends pickle tasks: cloudpickle (functions by value), else pickle."""
    try:
        import cloudpickle
    except ImportError:
        try:
            from joblib.externals import cloudpickle  # joblib < 1.5
        except ImportError:
            return pickle.dumps
    dumps: Callable[[Any], bytes] = cloudpickle.dumps
    return dumps


def portable(error: BaseException) -> BaseException:
    """``error``, or a RuntimeError with its type and message when it would not survive the trip
    back from a worker process (an exception class whose __init__ pickle cannot call again)."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error
