"""JSON data from the package's frozen dataclasses and back: one mechanism for every type.

pydantic ``TypeAdapter``\\ s over the dataclasses themselves (no parallel models),
made once per class and cached. :func:`dump` gives JSON-ready data (``mode="json"``:
enums as their values, tuples as lists, keys by alias); :func:`load` validates such
data back into the dataclass. Each class states its JSON shape where it is defined,
with pydantic's own markers:

- ``__pydantic_config__ = serial.CAMEL``: a field ``object_kind`` is the key
  ``objectKind`` (``Annotated[..., Field(alias="id")]`` names one otherwise);
- ``Annotated[..., Field(exclude=True)]``: a field the JSON leaves out;
- ``@computed_field``: a value derived from the fields (a property);
- ``Annotated[float, serial.rounded(n)]``: a float written rounded to ``n`` digits;
- ``_json_order = serial.key_order(...)``: the key order, only for a class whose JSON
  puts a computed key between two fields (pydantic writes computed fields last).

Callers keep calling ``obj.to_json()`` and ``Cls.from_json(data)``: one-line methods
that delegate here.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import (
    ConfigDict,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from reconciler.base import errors

T = TypeVar("T")

CAMEL = ConfigDict(alias_generator=to_camel, serialize_by_alias=True, validate_by_alias=True)


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def adapter(cls: type[T]) -> TypeAdapter[T]:
    """The TypeAdapter of ``cls``, built on first use (building one costs milliseconds;
    two threads racing on the first use build it twice, harmlessly)."""
    found = _ADAPTERS.get(cls)
    if found is None:
        found = _ADAPTERS[cls] = TypeAdapter(cls)
    return found


def dump(obj: object) -> dict[str, Any]:
    """``obj`` as JSON-ready data: what ``json.dumps`` writes as the type's JSON."""
    found = _ADAPTERS.get(type(obj)) or adapter(type(obj))
    data: dict[str, Any] = found.dump_python(obj, mode="json", by_alias=True)
    return data


class Invalid(errors.PermanentError, ValueError):
    """Data that does not fit its type, said in one line: where and what, for at most
    three problems, never the value found (a saved plan holds manifest documents)."""


def load(cls: type[T], data: Any, *, context: dict[str, Any] | None = None) -> T:
    """``data`` (as :func:`dump` made it) validated back into a ``cls``; :class:`Invalid`
    when it does not fit."""
    try:
        return adapter(cls).validate_python(data, context=context)
    except ValidationError as exc:
        raise Invalid(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    problems = exc.errors(include_url=False, include_input=False, include_context=False)
    said = [
        f"{'.'.join(str(part) for part in problem['loc']) or 'the document'}: {problem['msg']}"
        for problem in problems[:3]
    ]
    more = len(problems) - len(said)
    return "; ".join(said) + (f" (and {more} more)" if more > 0 else "")


def rounded(ndigits: int) -> PlainSerializer:
    """A float written rounded to ``ndigits`` digits (the value kept is not rounded)."""

    def rounding(value: float) -> float:
        return round(value, ndigits)

    return PlainSerializer(rounding, return_type=float)


def key_order(*keys: str) -> Any:
    """A serializer that writes exactly ``keys``, in this order, for a class whose JSON
    interleaves computed keys with its fields: pydantic writes computed fields after
    every field, and a saved or answered document keeps the key order it always had."""

    def in_order(self: Any, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {key: data[key] for key in keys}

    return model_serializer(mode="wrap")(in_order)
