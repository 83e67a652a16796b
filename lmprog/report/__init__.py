"""A self-contained HTML report of an optimization (``lmprog optimize --report``).

Holds ``_html``. May import: ``optimize`` (the result it shows) and the layers below.
"""

from __future__ import annotations

from lmprog.report._html import render_report, write_report

__all__ = ["render_report", "write_report"]
