"""TODO"""

from __future__ import annotations

from lmprog.report._html import render_report, write_report

__all__ = ["render_report", "write_report"]
