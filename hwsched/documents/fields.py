"""One strict reader and one writer for every JSON document hwsched writes.

A document is a frozen dataclass. Its JSON form is its fields in declared order (nested
dataclasses as objects, tuples as lists), plus the values of the properties it names in
``JSON_DERIVED`` (written for scripts, checked and recomputed on reading), plus the keys of an
``extra`` field when it has one (fields a newer or parallel writer added, kept so that reading
and writing again loses nothing; with a ``key_order`` field, in the order they were read).
Reading walks the type hints: a missing required field or a value of the wrong type is one
error naming the file and the field path, e.g.
``run.json: field 'stages[1].busy_ms' must be a finite number, got 'fast'``.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Point:
...     x_mm: float
...     label: str | None = None
>>> read_record(Point, {"x_mm": 2}, FieldReader("p.json", ValueError))
Point(x_mm=2, label=None)
>>> record_to_dict(Point(1.5))
{'x_mm': 1.5, 'label': None}
>>> read_record(Point, {"x_mm": "2"}, FieldReader("p.json", ValueError))
Traceback (most recent call last):
ValueError: p.json: field 'x_mm' must be a finite number, got '2'
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

from hwsched.errors import HwschedError

#: Field metadata: leave the field out of the JSON while it holds its default (optional
#: sections that exist only when measured, e.g. an analysis's ``accuracy``).
OMIT_DEFAULT = {"omit_default": True}
#: Field metadata: never written nor read (in-memory results such as output arrays).
NOT_JSON = {"json": False}
#: Name of the field that keeps keys a record does not declare.
EXTRA = "extra"
#: Name of the (not written) field that keeps the order a record's keys were read in, so that a
#: key another writer put between two declared ones is written back where it was.
KEY_ORDER = "key_order"


class FieldReader:
    """Field access with errors that name the file and the field path."""

    def __init__(self, where: str, error: type[Exception] = HwschedError) -> None:
        self.where, self.error = where, error

    def fail(self, path: str, problem: str) -> Exception:
        return self.error(f"{self.where}: field {path!r} {problem}")

    def get(self, data: Any, key: str, path: str) -> Any:
        if not isinstance(data, Mapping):
            raise self.error(f"{self.where}: {_path_or_top(path)} must be an object")
        if key not in data:
            raise self.error(f"{self.where}: missing field {_join(path, key)!r}")
        return data[key]

    def value(self, value: Any, hint: Any, path: str) -> Any:
        """``value`` checked against the type ``hint``; containers and records recursively."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any:
            return value
        if origin in (typing.Union, types.UnionType):
            return self._union(value, args, path)
        if dataclasses.is_dataclass(hint):
            return read_record(hint, value, self, path)
        if origin is tuple:
            if not isinstance(value, list):
                raise self.fail(path, f"must be a list, got {_show(value)}")
            return tuple(self.value(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if origin in (dict, Mapping) or hint in (dict, Mapping):
            return self._mapping(value, args[1] if args else Any, path)
        return self._scalar(value, hint, path)

    def _union(self, value: Any, args: tuple, path: str) -> Any:
        if value is None and type(None) in args:
            return None
        *others, last = [a for a in args if a is not type(None)]
        for hint in others:  # e.g. ``int | str``: the first type that reads it
            try:
                return self.value(value, hint, path)
            except self.error:
                continue
        return self.value(value, last, path)

    def _mapping(self, value: Any, hint: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be an object, got {_show(value)}")
        return {str(k): self.value(v, hint, f"{path}.{k}") for k, v in value.items()}

    def _scalar(self, value: Any, hint: Any, path: str) -> Any:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if hint is float:
            if not (is_int or isinstance(value, float)) or not _finite(value):
                raise self.fail(path, f"must be a finite number, got {_show(value)}")
        elif hint is int:
            if not is_int:
                raise self.fail(path, f"must be an integer, got {_show(value)}")
        elif hint is bool:
            if not isinstance(value, bool):
                raise self.fail(path, f"must be true or false, got {_show(value)}")
        elif hint is str:
            if not isinstance(value, str):
                raise self.fail(path, f"must be a string, got {_show(value)}")
        else:  # pragma: no cover - a record declared a type this reader does not know
            raise TypeError(f"no JSON reading for {hint!r} at {path}")
        return value


def read_record(cls: type, data: Any, reader: FieldReader, path: str = "") -> Any:
    """An instance of the dataclass ``cls`` from parsed JSON, every field checked."""
    if not isinstance(data, Mapping):
        raise reader.error(f"{reader.where}: {_path_or_top(path)} must be an object, "
                           f"got {_show(data)}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in _json_fields(cls):
        if f.name == EXTRA:
            continue
        if f.name not in data and _has_default(f):
            continue
        values[f.name] = reader.value(reader.get(data, f.name, path), hints[f.name],
                                      _join(path, f.name))
    for name in getattr(cls, "JSON_DERIVED", ()):  # always written, so required; recomputed
        reader.value(reader.get(data, name, path), _derived_hint(cls, name), _join(path, name))
    names = {f.name for f in dataclasses.fields(cls)}
    if EXTRA in names:
        known = names | set(getattr(cls, "JSON_DERIVED", ()))
        values[EXTRA] = {k: v for k, v in data.items() if k not in known}
    if KEY_ORDER in names:
        values[KEY_ORDER] = tuple(data)
    return cls(**values)


def record_to_dict(record: Any) -> dict[str, Any]:
    """The JSON object of a record: its keys in the order they were read (``key_order``, when
    the record keeps it), else fields in declared order, derived properties, then ``extra``."""
    out: dict[str, Any] = {}
    order = getattr(record, KEY_ORDER, ())
    for f in _json_fields(type(record)):
        value = getattr(record, f.name)
        absent = f.metadata.get("omit_default") and value == _default(f) and f.name not in order
        if f.name == EXTRA or absent:
            continue
        out[f.name] = _plain(value)
    for name in getattr(record, "JSON_DERIVED", ()):
        out[name] = _plain(getattr(record, name))
    out.update(getattr(record, EXTRA, None) or {})
    if order:
        ranked = {key: i for i, key in enumerate(order)}
        out = dict(sorted(out.items(), key=lambda item: ranked.get(item[0], len(ranked))))
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return record_to_dict(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _json_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("json", True)]


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _derived_hint(cls: type, name: str) -> Any:
    prop = getattr(cls, name)
    return typing.get_type_hints(prop.fget).get("return", Any)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _path_or_top(path: str) -> str:
    return f"field {path!r}" if path else "the top level"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _finite(value: float | int) -> bool:
    """Finite and representable as a float: ``math.isfinite`` of a 400-digit integer (YAML
    reads one as an int) raises OverflowError instead of answering."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
