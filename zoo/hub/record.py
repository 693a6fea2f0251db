"""Records: frozen, keyword-only dataclasses whose values are checked against their field annotations.

:class:`Record` is the base of the manifest's :class:`~zoo.hub.entry.WeightsEntry` and
:class:`~zoo.hub.entry.Source`: a field's type annotation is checked against the value (``tuple[int, int, int]``
is a JSON list of three ints, ``Literal[...]`` one of the listed strings, ``X | None`` may be null or absent),
a field made with :func:`checked_field` adds a ``check`` and the ``must`` text of its error message, and
``_check`` holds the checks that involve several fields.
"""

import copy
import math
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, FrozenInstanceError, field, fields, is_dataclass
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from zoo.errors import ManifestError

__all__ = ["Record", "checked_field", "fits_type"]


def checked_field(must: str | None = None, check: Callable[[Any], bool] | None = None, **kwargs: Any) -> Any:
    """A field that says what a valid value is (``must``, for the error) and how to check it beyond its type."""
    return field(metadata={"must": must, "check": check}, **kwargs)


def fits_type(value: Any, tp: Any) -> bool:
    """Whether a JSON value fits a type annotation (lists stand for tuples)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(fits_type(value, a) for a in args)
    if origin is Literal:
        return isinstance(value, str) and value in args
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(fits_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(fits_type(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict:
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
    if isinstance(tp, type) and is_dataclass(tp):
        return isinstance(value, tp)
    raise TypeError(f"no check for the annotation {tp!r}")


def _describe(tp: Any) -> str:
    """The default ``must`` text of a field: its Literal's values."""
    literals = [a for a in (get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,))
                if get_origin(a) is Literal]  # fmt: skip
    return "one of " + ", ".join(v for lit in literals for v in get_args(lit)) if literals else f"a {tp!r}"


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


class Record:
    """Validation for the dataclasses below, derived from their annotations and field metadata.

    Also their keyword-only ``__init__``, ``__repr__``, ``__eq__``/``__hash__`` and frozenness: the
    ``@dataclass`` options below generate none of them, because compiling generated methods from source
    took 2.5 ms of the first pretrained load in every process, more than reading the manifest.
    """

    def __init__(self, **kwargs: Any) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            if f.name in kwargs:
                value = kwargs.pop(f.name)
            elif f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:
                value = f.default_factory()
            else:
                raise TypeError(f"{type(self).__name__}() missing required keyword argument {f.name!r}")
            object.__setattr__(self, f.name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s) {', '.join(sorted(kwargs))}")
        self.__post_init__()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__ and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({shown})"

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            value, tp = getattr(self, f.name), hints[f.name]
            check = f.metadata.get("check")
            if not fits_type(value, tp) or (value is not None and check is not None and not check(value)):
                raise ManifestError(f"{f.name}={value!r} must be {f.metadata.get('must') or _describe(tp)}")
            if isinstance(value, list):  # frozen: JSON lists become tuples
                object.__setattr__(self, f.name, tuple(value))
            elif isinstance(value, Mapping):  # a copy: the caller's (or the cached manifest's) stays as it is
                object.__setattr__(self, f.name, copy.deepcopy(dict(value)))
        self._check()

    def _check(self) -> None:
        """Checks that involve several fields."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The fields in the order they are written to the manifest."""
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def required_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)  # type: ignore[arg-type]

    @classmethod
    def _kwargs(cls, data: Mapping[str, Any], what: str) -> dict[str, Any]:
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            known = ", ".join(cls.field_names())
            raise ManifestError(f"{what}unknown field(s) {', '.join(unknown)}; known fields: {known}")
        for name in cls.required_fields():
            if name not in data:
                raise ManifestError(f"{what}missing required field {name!r}")
        return dict(data)

    def _json(self, keep_none: tuple[str, ...] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            if value is None and name not in keep_none:
                continue
            if isinstance(value, Record):
                value = value._json()
            elif isinstance(value, dict):
                value = copy.deepcopy(value)  # the caller may edit what it gets; the entry stays as it is
            if isinstance(value, tuple):
                value = [v._json() if isinstance(v, Record) else v for v in value]
            out[name] = value
        return out
