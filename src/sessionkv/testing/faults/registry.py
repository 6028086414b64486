"""Faults addressable by name: the registry, and the ``NAME:param=value,...`` spec syntax of the CLI and fixtures.

Spec examples: ``latency:latency_ms=100,jitter_ms=10,direction=upstream``, ``error_reply:error=loading,command=GET``,
``lose_reply:command=EXEC,nth=1``, ``down``. Values are converted to the parameter's type (``none`` for an optional
parameter means ``None``; booleans accept true/false/yes/no/1/0). Values cannot contain commas.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Final, Literal, TypeVar

from sessionkv.testing.faults.base import ByteFault, CommandFault, Fault, ProxyFault
from sessionkv.testing.faults.disconnect import Blackhole, Down, LimitData, ResetPeer, SlowClose, Timeout
from sessionkv.testing.faults.error_replies import ErrorReply
from sessionkv.testing.faults.network import Bandwidth, Latency, Slicer
from sessionkv.testing.faults.replies import CutReply, DelayReply, DropCommand, LoseReply
from sessionkv.testing.faults.scan import ScanDuplicates, ScanEmptyPages

__all__ = ["FAULTS", "fault_class", "fault_parameters", "parse_fault_spec", "register"]

FAULTS: Final[dict[str, type[Fault]]] = {}
"""Every registered fault class by name."""

F = TypeVar("F", bound=type[Fault])

_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


def register(cls: F) -> F:
    """Make a fault class addressable by its ``name`` (usable as a class decorator for custom faults)."""
    if not (isinstance(cls, type) and issubclass(cls, ByteFault | CommandFault | ProxyFault)) or not cls.name:
        raise TypeError(f"{cls!r} is not a ByteFault, CommandFault or ProxyFault subclass with a non-empty name")
    existing = FAULTS.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"fault name {cls.name!r} is already registered by {existing.__qualname__}")
    FAULTS[cls.name] = cls
    return cls


for _cls in (
    Latency,
    Bandwidth,
    Slicer,
    ResetPeer,
    Timeout,
    Blackhole,
    LimitData,
    SlowClose,
    Down,
    ErrorReply,
    DropCommand,
    LoseReply,
    DelayReply,
    CutReply,
    ScanEmptyPages,
    ScanDuplicates,
):
    register(_cls)


def fault_class(name: str) -> type[Fault]:
    """The fault class registered as ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return FAULTS[name]
    except KeyError:
        raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(sorted(FAULTS))}") from None


def fault_parameters(cls: type[Fault]) -> dict[str, Any]:
    """The constructor parameters of a fault class and their types (for docs, help texts and spec parsing)."""
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls) if field.init}


def parse_fault_spec(spec: str) -> Fault:
    """Build a fault from ``"name"`` or ``"name:param=value,param=value"``; ``ValueError`` saying what is wrong."""
    name, _, params_text = spec.strip().partition(":")
    cls = fault_class(name.strip())
    parameters = fault_parameters(cls)
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in params_text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"fault spec {spec!r}: expected param=value, got {item!r}")
        if key not in parameters:
            raise ValueError(f"fault spec {spec!r}: {name} has no parameter {key!r}; it has {', '.join(parameters)}")
        try:
            kwargs[key] = _convert(raw.strip(), parameters[key])
        except ValueError as exc:
            raise ValueError(f"fault spec {spec!r}: {key}={raw.strip()!r}: {exc}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"fault spec {spec!r}: {exc}") from None


def _convert(raw: str, annotation: Any) -> object:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        if raw in typing.get_args(annotation):
            return raw
        raise ValueError(f"expected one of {', '.join(map(repr, typing.get_args(annotation)))}")
    if origin is types.UnionType or origin is typing.Union:
        members = typing.get_args(annotation)
        if type(None) in members and raw.lower() in ("none", "null", ""):
            return None
        literals = [value for member in members if typing.get_origin(member) is Literal for value in member.__args__]
        if raw in literals:
            return raw
        # Most specific first, so that connection=3 is an index and connection=worker a client name.
        for member in (bool, int, float, str):
            if member in members:
                try:
                    return _convert(raw, member)
                except ValueError:
                    continue
        raise ValueError(f"cannot be read as {annotation}")
    if annotation is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError("expected true or false")
    if annotation is int:
        return int(raw)
    if annotation is float:
        return float(raw)
    if annotation is str:
        return raw
    raise ValueError(f"parameters of type {annotation} cannot be given in a spec")
