"""TODO"""

from __future__ import annotations

from lmprog.signature._signature import Field, Signature, field_spec, signature_from_function
from lmprog.signature._specs import MISSING

__all__ = ["MISSING", "Field", "Signature", "field_spec", "signature_from_function"]
