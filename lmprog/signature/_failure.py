"""The one parse-failure type: a completion (or a value inside one) does not fit its annotation.

A :class:`ParseFailure` carries structured :class:`Problem` records: which output field and
where inside its value (``[2].name``), a short message addressed to the model, and whether it
is a *validation* failure (the value had the right form but a validator refused it: a pydantic
validator, a field constraint, a constructor's check) or a *format* failure (the reply was not
written in the expected form). Type specs raise it for one value; the completion reader
(:mod:`lmprog.format`) raises it for a whole reply, with one problem per bad field; the function
runner turns its messages into the retry message and, past the retry limit, into
:class:`~lmprog.errors.OutputParseError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

__all__ = ["ParseFailure", "Problem"]

#: The message of a failure that names no problem.
_NO_FORMAT = "the reply did not follow the format"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a completion.

    Attributes:
        message: Short, addressed to the model (``expected an integer, got 'many'``).
        field: The output field it concerns, when the reply has several; None otherwise.
        path: Where inside the field's value (``[2].name``, ``.age``); empty for the whole value.
        validation: True when a validator refused a well-formed value, False for a reply in
            the wrong format.
    """

    message: str
    field: str | None = None
    path: str = ""
    validation: bool = False

    def __str__(self) -> str:
        """``field: path: message``, leaving out the parts that are empty."""
        parts = [part for part in (self.field, self.path.lstrip(".")) if part]
        return ": ".join([*parts, self.message])

    def under(self, segment: str) -> Problem:
        """The same problem one level down: ``segment`` is ``[3]`` or ``.name``."""
        return dataclasses.replace(self, path=segment + self.path)

    def in_field(self, name: str) -> Problem:
        """The same problem, located in output field ``name``."""
        return dataclasses.replace(self, field=name)


class ParseFailure(ValueError):
    """A completion, or a value read from one, does not fit its annotation.

    ``ParseFailure("expected an integer")`` is one problem; a sequence gives several (strings
    become problems with no location). ``path`` and ``validation`` apply to the problems given
    as strings.

    Attributes:
        problems: What is wrong, in order (never empty).
        errors: The problems as short messages for the model (they go into the retry message).
        validation: True when every problem is a validator's refusal (no format failure).

    Example:
        >>> failure = ParseFailure("expected an integer", path="[1]")
        >>> failure.errors
        ['[1]: expected an integer']
        >>> failure.validation
        False
    """

    def __init__(
        self,
        problems: str | Problem | Sequence[str | Problem],
        path: str = "",
        *,
        validation: bool = False,
    ) -> None:
        items = [problems] if isinstance(problems, str | Problem) else list(problems)
        self.problems: list[Problem] = [
            item if isinstance(item, Problem) else Problem(item, path=path, validation=validation)
            for item in items
        ] or [Problem(_NO_FORMAT, validation=validation)]
        super().__init__("; ".join(self.errors))

    def __reduce__(self) -> tuple[type[ParseFailure], tuple[list[Problem]]]:
        return ParseFailure, (self.problems,)

    @property
    def errors(self) -> list[str]:
        """The problems as short messages addressed to the model."""
        return [str(problem) for problem in self.problems]

    @property
    def validation(self) -> bool:
        """True when a validator refused well-formed values; False when any problem is a
        format failure."""
        return all(problem.validation for problem in self.problems)

    @property
    def path(self) -> str:
        """The location of the first problem inside its value (``[2].name``; empty: the whole)."""
        return self.problems[0].path

    def under(self, segment: str) -> ParseFailure:
        """The same failure one level down: ``segment`` is ``[3]`` or ``.name``."""
        return ParseFailure([problem.under(segment) for problem in self.problems])

    def in_field(self, name: str) -> ParseFailure:
        """The same failure, located in output field ``name``."""
        return ParseFailure([problem.in_field(name) for problem in self.problems])
