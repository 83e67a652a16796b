"""Signatures: an lm_function's input and output fields, read from the function itself.

Inputs are the parameters (names, type hints, defaults); the instruction and the field
descriptions come from the docstring (Google, NumPy or reST) and, failing that, from ``#``
comments on the parameter lines. The output is the return annotation (``str`` when absent): a
pydantic model, dataclass or TypedDict gives one output field per model field
(``multi_output``), anything else a single field named ``output``.

Every annotation is checked here, at decoration time: an unsupported one raises
:class:`~lmprog.errors.SignatureError` naming the function, its file and line.
"""

from __future__ import annotations

import dataclasses
import inspect
import reprlib
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

from lmprog._fingerprint import to_jsonable
from lmprog.errors import SignatureError, UsageError
from lmprog.signature._constraints import has_constraints
from lmprog.signature._docstrings import (
    DocInfo,
    attribute_docs,
    field_lines,
    parse_docstring,
    signature_comments,
)
from lmprog.signature._failure import ParseFailure
from lmprog.signature._history import is_history
from lmprog.signature._registry import UnsupportedType, build_spec, type_name
from lmprog.signature._specs import MISSING, TypeSpec
from lmprog.signature._specs_json import RecordSpec

__all__ = ["MISSING", "Field", "Signature", "field_spec", "signature_from_function"]

_EMPTY = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True)
class Field:
    """One input or output field. ``default`` is :data:`MISSING` when there is none."""

    name: str
    annotation: Any
    description: str = ""
    default: Any = MISSING
    _spec: TypeSpec | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING


@dataclasses.dataclass(frozen=True)
class Signature:
    """What an lm_function takes and returns, independent of any prompt."""

    name: str
    qualname: str
    module: str
    instruction: str
    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    return_annotation: Any
    multi_output: bool
    file: str | None = None
    line: int | None = None
    _record: RecordSpec | None = dataclasses.field(default=None, compare=False, repr=False)
    #: the inputs whose annotation holds constraints (``Annotated[int, Field(ge=0)]``)
    _constrained: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.outputs)

    @property
    def history(self) -> str | None:
        """The input annotated :data:`~lmprog.signature.History` (shown as prior chat turns,
        not as an input line), if any."""
        return next((f.name for f in self.inputs if is_history(f.annotation)), None)

    def check_inputs(self, values: Mapping[str, Any]) -> None:
        """Raise :class:`UsageError` naming the function and the parameter when an argument
        breaks a constraint of its annotation (only constrained inputs are checked)."""
        history = self.history
        for field in self.inputs:
            if field.name not in values or (field.name not in self._constrained and field.name != history):
                continue
            value = values[field.name]
            if (field.has_default and value is field.default) or (field.name == history and value is None):
                continue
            try:
                field_spec(field).validate(to_jsonable(value))
            except ParseFailure as error:
                shown = "History (a list of {role, content} turns)" if field.name == history else None
                raise UsageError(
                    f"argument {field.name}={reprlib.repr(value)} does not fit "
                    f"{shown or type_name(field.annotation)}: {error}",
                    function=self.qualname,
                    file=self.file,
                    line=self.line,
                ) from None

    def build_return(self, values: Mapping[str, Any]) -> Any:
        """The return value from output-field values: a model / dataclass / TypedDict instance
        for a multi-output signature (missing fields take their defaults), else
        ``values["output"]``. Raises ``ValueError`` when the values do not make a valid instance."""
        if not self.multi_output:
            if "output" not in values:
                raise ValueError("missing the output value")
            return values["output"]
        return self.record_spec().construct(values)

    def split_return(self, value: Any) -> dict[str, Any]:
        """Output-field values of a return value: the inverse of :meth:`build_return`."""
        if not self.multi_output:
            return {"output": value}
        return self.record_spec().values_of(value)

    def record_spec(self) -> RecordSpec:
        """The return type's record spec (multi-output signatures only)."""
        if self._record is not None:
            return self._record
        spec = build_spec(self.return_annotation)
        if not isinstance(spec, RecordSpec):
            raise TypeError(f"{self.qualname} returns {self.return_annotation!r}, not a record")
        return spec


def field_spec(field: Field) -> TypeSpec:
    """The type spec that renders and parses ``field`` (built once at decoration time)."""
    return field._spec if field._spec is not None else build_spec(field.annotation)


def signature_from_function(
    fn: Callable[..., Any], *, name: str | None = None, skip_self: bool | None = None
) -> Signature:
    """Read the :class:`Signature` of ``fn``.

    ``skip_self``: drop the first parameter (``None``: only when it is named ``self`` or ``cls``).
    String annotations (``from __future__ import annotations``) are resolved in the function's
    globals, then its closure cells, then the locals of the scope that defines it, so types
    defined inside a function work.
    """
    fn = getattr(fn, "__func__", fn)  # staticmethod / classmethod / bound method
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    code = getattr(fn, "__code__", None)
    file = _source_file(fn, code)
    line = code.co_firstlineno if code is not None else None

    def fail(message: str) -> SignatureError:
        return SignatureError(message, function=qualname, file=file, line=line)

    try:
        parameters = list(inspect.signature(fn).parameters.values())
        declared_return = inspect.signature(fn).return_annotation
    except (TypeError, ValueError) as error:
        raise fail(f"cannot read the signature: {error}") from error
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    is_self = bool(parameters) and parameters[0].name in ("self", "cls")
    if parameters and parameters[0].kind in positional and (skip_self or (skip_self is None and is_self)):
        parameters = parameters[1:]
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise fail(f"*{parameter.name} is not supported: declare each input as a named parameter")
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            raise fail(f"**{parameter.name} is not supported: declare each input as a named parameter")

    namespace = _local_namespace(fn)
    hints = _resolve_hints(fn, namespace, fail)
    doc = parse_docstring(inspect.getdoc(fn))
    comments, return_comment = signature_comments(fn)

    def spec_of(annotation: Any, where: str) -> TypeSpec:
        try:
            return build_spec(annotation, namespace)
        except UnsupportedType as error:
            raise fail(error.describe(where, annotation)) from None

    inputs = []
    constrained = []
    for parameter in parameters:
        annotation = hints.get(parameter.name, str)
        field = Field(
            name=parameter.name,
            annotation=annotation,
            description=doc.params.get(parameter.name) or comments.get(parameter.name, ""),
            default=MISSING if parameter.default is _EMPTY else parameter.default,
            _spec=spec_of(annotation, f"parameter {parameter.name!r}"),
        )
        if has_constraints(field_spec(field)):
            constrained.append(field.name)
            if field.has_default:
                try:
                    field_spec(field).validate(to_jsonable(field.default))
                except ParseFailure as error:
                    message = f"the default {field.default!r} breaks its constraint: {error}"
                    raise fail(f"parameter {field.name!r}: {message}") from None
        inputs.append(field)
    histories = [f.name for f in inputs if is_history(f.annotation)]
    if len(histories) > 1:
        raise fail(
            f"parameters {', '.join(map(repr, histories))} are all History: a function has one history"
        )

    return_annotation = str if declared_return is _EMPTY else hints.get("return", declared_return)
    if return_annotation is None or return_annotation is type(None):
        raise fail("the return type is None: an lm_function returns a value (leave it out for str)")
    spec = spec_of(return_annotation, "the return type")
    record = spec if isinstance(spec, RecordSpec) else None
    if record is not None:
        if not record.fields:
            raise fail(f"the return type {return_annotation.__name__} has no fields")
        outputs = _record_outputs(record, doc)
    else:
        outputs = (Field("output", return_annotation, doc.returns or return_comment, _spec=spec),)
    return Signature(
        name=name or str(getattr(fn, "__name__", qualname)),
        qualname=qualname,
        module=getattr(fn, "__module__", None) or "",
        instruction=doc.instruction,
        inputs=tuple(inputs),
        outputs=outputs,
        return_annotation=return_annotation,
        multi_output=record is not None,
        file=file,
        line=line,
        _record=record,
        _constrained=tuple(constrained),
    )


def _record_outputs(record: RecordSpec, doc: DocInfo) -> tuple[Field, ...]:
    """One output field per record field; descriptions from the model (pydantic ``description``,
    dataclass ``metadata``), then the function docstring, then the class body."""
    listed = field_lines(doc.returns, record.fields)
    written = attribute_docs(record.annotation)
    return tuple(
        Field(
            name=name,
            annotation=item.annotation,
            description=item.description
            or doc.named_returns.get(name)
            or listed.get(name)
            or written.get(name, ""),
            default=item.default,
            _spec=item.spec,
        )
        for name, item in record.fields.items()
    )


class _Annotations:
    """A holder so that ``typing.get_type_hints`` resolves annotations one at a time."""

    def __init__(self, annotations: dict[str, Any]) -> None:
        self.__annotations__ = annotations


def _resolve_hints(
    fn: Callable[..., Any], namespace: dict[str, Any], fail: Callable[[str], SignatureError]
) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, localns=namespace, include_extras=True)
    except Exception:  # resolve them one by one below, to name the culprit
        pass
    resolved: dict[str, Any] = {}
    globalns = getattr(fn, "__globals__", {})
    for key, annotation in getattr(fn, "__annotations__", {}).items():
        try:
            holder = _Annotations({key: annotation})
            resolved.update(
                typing.get_type_hints(holder, globalns=globalns, localns=namespace, include_extras=True)
            )
        except Exception as error:
            where = "the return type" if key == "return" else f"parameter {key!r}"
            raise fail(f"{where}: cannot resolve the annotation {annotation!r} ({error})") from error
    return resolved


def _local_namespace(fn: Callable[..., Any]) -> dict[str, Any]:
    """Names visible where ``fn`` is defined but absent from its globals: the locals of the first
    calling frame outside lmprog (the decorating scope), then the closure cells on top."""
    namespace: dict[str, Any] = {}
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "lmprog" and not module.startswith("lmprog."):
            if frame.f_locals is not frame.f_globals:
                namespace.update(frame.f_locals)
            break
        frame = frame.f_back  # type: ignore[assignment]
    del frame
    code = getattr(fn, "__code__", None)
    for var, cell in zip(
        getattr(code, "co_freevars", ()), getattr(fn, "__closure__", None) or (), strict=False
    ):
        try:
            namespace[var] = cell.cell_contents
        except ValueError:  # an empty cell: the name is not bound yet
            continue
    return namespace


def _source_file(fn: Any, code: Any) -> str | None:
    try:
        return inspect.getsourcefile(fn) or (code.co_filename if code is not None else None)
    except TypeError:
        return code.co_filename if code is not None else None
