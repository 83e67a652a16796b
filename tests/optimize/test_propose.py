"""The proposer describes a function's types the way the rest of lmprog names them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

import lmprog
from lmprog.optimize.propose import describe_function
from lmprog.signature import type_name


class Answer(BaseModel):
    value: int


@lmprog.lm_function
def pick(limit: int | None, answers: list[Answer]) -> Literal["a", "b"]:
    """Pick one."""
    raise NotImplementedError


def test_type_names_in_the_function_description_are_the_signature_names() -> None:
    lines = describe_function(pick).splitlines()
    assert lines[1:4] == [
        f"input limit: {type_name(int | None)}",
        "input answers: list[Answer]",  # no module path of the user's class
        "output output: Literal['a', 'b']",
    ]
