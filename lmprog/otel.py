"""TODO"""

from __future__ import annotations

from lmprog.trace._otel import DEFAULT_MAX_LENGTH, INSTALL_COMMAND, disable_otel, enable_otel, otel_enabled

__all__ = ["DEFAULT_MAX_LENGTH", "INSTALL_COMMAND", "disable_otel", "enable_otel", "otel_enabled"]
