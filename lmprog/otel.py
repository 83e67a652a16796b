"""Old import path of the OpenTelemetry export, kept for users: it now lives in
:mod:`lmprog.trace` (``lmprog.trace.enable_otel``).
"""

from __future__ import annotations

from lmprog.trace import DEFAULT_MAX_LENGTH, INSTALL_COMMAND, disable_otel, enable_otel, otel_enabled

__all__ = ["DEFAULT_MAX_LENGTH", "INSTALL_COMMAND", "disable_otel", "enable_otel", "otel_enabled"]
