"""Dataclasses from mappings (YAML, JSON), typed by their annotations.

``load(cls, data, where)`` builds ``cls`` from a mapping: unknown keys are errors that list the allowed
ones, missing required fields are named, every value is checked against its field's annotation (bool,
int, float (an int is taken; finite), str, ``Literal[...]`` choices, ``X | None``, ``tuple[X, ...]``,
list, dict, nested dataclasses) and errors read ``<where>: <field path>: <problem>``. A ``ValueError``
raised by the class itself (its ``__post_init__``) is reported under the same ``where``.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Mapping, TypeVar

T = TypeVar("T")


class _Mismatch(Exception):
    """A value that does not fit an annotation; turned into the caller's error with the field's path."""


def choices(cls: type, name: str) -> tuple:
    """The allowed values of a ``Literal[...]`` field."""
    return typing.get_args(typing.get_type_hints(cls)[name])


def one_of(options: tuple) -> str:
    """'a', 'b' or 'c'."""
    quoted = [repr(o) for o in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def check_choices(obj: Any) -> None:
    """ValueError naming the first ``Literal[...]`` field of a dataclass instance set to a value outside it
    (for direct construction; ``load`` checks them while loading)."""
    for name, kind in typing.get_type_hints(type(obj)).items():
        if typing.get_origin(kind) is Literal and getattr(obj, name) not in typing.get_args(kind):
            raise ValueError(f"{name}: must be {one_of(typing.get_args(kind))}, got {getattr(obj, name)!r}")


def load(cls: type[T], data: Any, where: str, error: type[Exception] = ValueError) -> T:
    """``cls`` built from the mapping ``data`` (None: all defaults), or ``error`` naming where and what.
    A nested dataclass field given None (an empty YAML section) keeps its default."""
    return _dataclass(cls, {} if data is None else data, where, "", error)


def check(cls: type, data: Any, where: str, error: type[Exception] = ValueError) -> None:
    """Check keys and value types of a partial mapping of ``cls`` fields (overrides) without building it."""
    _fields(cls, data, where, "", error, partial=True)


def _fail(error: type[Exception], where: str, path: str, problem: str) -> Exception:
    return error(f"{where}: {path}: {problem}" if path else f"{where}: {problem}")


def _fields(cls: type, data: Any, where: str, path: str, error: type[Exception], partial: bool) -> dict:
    if not isinstance(data, Mapping):
        raise _fail(error, where, path, f"expected a mapping, got {type(data).__name__}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise _fail(error, where, path, f"unknown key(s) {unknown}; allowed: {sorted(names)}")
    required = [f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [] if partial else [n for n in required if n not in data]
    if missing:
        raise _fail(error, where, path, f"missing required key(s) {missing}")
    hints = typing.get_type_hints(cls)
    empty = {n for n, v in data.items() if v is None and dataclasses.is_dataclass(hints[n]) and n not in required}
    return {name: _value(hints[name], value, where, f"{path}.{name}" if path else name, error)
            for name, value in data.items() if name not in empty}  # an empty section keeps its default


def _dataclass(cls: type, data: Any, where: str, path: str, error: type[Exception]) -> Any:
    kwargs = _fields(cls, data, where, path, error, partial=False)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise _fail(error, where, path, str(exc)) from exc


def _value(kind: Any, value: Any, where: str, path: str, error: type[Exception]) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        if value not in args:
            raise _fail(error, where, path, f"must be {one_of(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, value, where, path, error)
    if origin is tuple and args[-1:] == (Ellipsis,) and isinstance(value, (list, tuple)):
        return tuple(_value(args[0], v, where, f"{path}[{i}]", error) for i, v in enumerate(value))
    try:
        value = _convert(kind, value)
    except _Mismatch:
        raise _fail(error, where, path, f"expected {_describe(kind)}, got {type(value).__name__} {value!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(error, where, path, f"must be finite, got {value!r}")
    return value


def _convert(kind: Any, value: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(kind):
            return None
        for option in typing.get_args(kind):
            try:
                return _convert(option, value)
            except _Mismatch:
                continue
        raise _Mismatch
    kind = origin or kind
    if kind is Any:
        return value
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is tuple:
        ok = isinstance(value, (list, tuple))
        value = tuple(value) if ok else value
    elif kind is dict:
        ok = isinstance(value, Mapping)
        value = dict(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise _Mismatch
    return value


_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string", tuple: "a list",
          list: "a list", dict: "a mapping", type(None): "null"}


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    return _NAMES.get(typing.get_origin(kind) or kind, getattr(kind, "__name__", str(kind)))
