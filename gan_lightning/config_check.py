"""Check a composed config against the signatures of the classes it names, before anything is built.

The constructors of the networks, games, schedules and datamodules are the one place where each argument's type,
default, range and choices are written (``Annotated[float, Range(0, 1)]``, ``Literal["argmax", "integrate"]``); this
module reads their annotations and refuses, with one line, a key no constructor takes, a value of the wrong type, out
of its range or not among its choices: ``error: model.latent_dim='abc': expects an integer``, ``error: model.alpha=1.5
must be in [0, 1]``. ``check_arguments`` applies the same ranges and choices when a class is built from Python.
"""

from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import importlib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from gan_lightning.errors import ConfigError
from gan_lightning.moved import hint as moved_hint

SPECIAL = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


@dataclass(frozen=True)
class Range:
    """The allowed interval of a number, stated in its annotation: ``Annotated[float, Range(0, 1, high_open=True)]``
    is [0, 1); ``Range(1)`` is >= 1."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


# the ranges the games and schedules share
Share = Annotated[float, Range(0, 1)]  # a share or a probability, [0, 1]
PositiveInt = Annotated[int, Range(1)]
Count = Annotated[int, Range(0)]  # a whole number >= 0 (epochs, steps)
Decay = Annotated[float, Range(0, 1, high_open=True)]  # of an exponential moving average, [0, 1)


def _limits(hint: Any) -> tuple[list[Range], tuple | None, bool]:
    """The ranges and the choices (``Literal``) an annotation states, and whether it admits None."""
    ranges: list[Range] = []
    choices: tuple | None = None
    nullable = False
    for member in typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,):
        if member is type(None):
            nullable = True
        elif typing.get_origin(member) is Annotated:
            ranges += [m for m in member.__metadata__ if isinstance(m, Range)]
        elif typing.get_origin(member) is Literal:
            choices = typing.get_args(member)
    return ranges, choices, nullable


def limit_problem(hint: Any, value: Any, where: str) -> str | None:
    """One line saying why ``value`` is outside the range or the choices that ``hint`` states (None: it is inside)."""
    ranges, choices, nullable = _limits(hint)
    if value is None:
        return None
    if choices is not None and value not in choices:
        return f"{where}={value!r} is not one of {list(choices)}"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    for r in ranges:
        if number and not r.holds(value):
            return f"{where}={value} must be {r}{' or null' if nullable else ''}"
    return None


class Settings:
    """Base of the dataclasses that a config builds by ``_target_``: a game's groups of settings (its schedule, its
    switches). A stored config may name them (``safe_build``); their annotations' ranges and choices are checked when
    they are built (``PREFIX``: where they sit in the config, for the one-line errors)."""

    PREFIX: ClassVar[str] = "model"

    def __post_init__(self) -> None:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}  # type: ignore[arg-type]
        check_arguments(type(self), fields, self.PREFIX)

    def settings(self) -> dict[str, Any]:
        """The settings a config gives (what ``__init__`` takes), by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}  # type: ignore[arg-type]


def check_multiple(key: str, value: int, of: int, unit: str) -> None:
    """One line when ``value`` (at ``key``) is not a positive multiple of ``of`` (e.g. a balanced batch's classes)."""
    if value <= 0 or value % of:
        raise ConfigError(f"{key}={value} must be a positive multiple of the {of} {unit}")


def check_arguments(func: Any, values: dict[str, Any], prefix: str) -> None:
    """Refuse with one line an argument of ``func`` (its ``locals()`` at the top of a constructor: ``values``) outside
    the range or the choices of its annotation; ``prefix`` is where its settings sit in the config, e.g. ``model``."""
    hints = typing.get_type_hints(func, include_extras=True)
    for name, value in values.items():
        if name in hints:
            problem = limit_problem(hints[name], value, f"{prefix}.{name}")
            if problem:
                raise ConfigError(problem)


def resolve(target: str):
    """The object a ``_target_`` names, or None where it cannot be imported."""
    module_name, _, name = target.rpartition(".")
    try:
        obj = importlib.import_module(module_name)
    except ImportError:  # a class inside a module: a.b.Class.method is not used by configs
        return None
    return getattr(obj, name, None)


def _accepts(hint: Any, value: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``hint`` (None: the annotation says nothing checkable)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(hint)
    if origin is Annotated:  # the type inside; its range is checked by limit_problem
        return _accepts(typing.get_args(hint)[0], value)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_accepts(h, value) for h in typing.get_args(hint)]
        if any(v is True for v in verdicts):
            return True
        return False if all(v is False for v in verdicts) else None
    if hint is type(None):
        return value is None
    if isinstance(value, dict) and "_target_" in value:  # an object built from config: its own signature is checked
        return None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    base = origin or hint
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    if base in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if base is tuple and len(args) > 1:  # tuple[int, int, int]: element by element
            return len(args) == len(value) and all(_accepts(a, v) is not False for a, v in zip(args, value))
        return all(_accepts(args[0], v) is not False for v in value) if args else True
    if base in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False
        return all(_accepts(args[1], v) is not False for v in value.values()) if len(args) == 2 else True
    if inspect.isclass(base) and (value is None or isinstance(value, (str, int, float, bool))):
        return isinstance(value, base)  # e.g. a string where a tensor or a module is expected
    return None


WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _describe(typing.get_args(hint)[0])
    if origin is Literal:
        return f"one of {list(typing.get_args(hint))}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    base = origin or hint
    if base in (list, tuple, collections.abc.Sequence):
        return "a list"
    if base in (dict, collections.abc.Mapping):
        return "a mapping"
    return WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def _locate(hint: Any, value: Any, where: str) -> tuple[str, Any, Any]:
    """The innermost element of ``value`` that does not fit (its location, value and annotation)."""
    base, args = typing.get_origin(hint), [a for a in typing.get_args(hint) if a is not Ellipsis]
    if base in (typing.Union, types.UnionType):  # the member of the same kind as the value (mapping, list)
        kind = dict if isinstance(value, dict) else list if isinstance(value, (list, tuple)) else None
        for member in args:
            origin = typing.get_origin(member) or member
            if (kind is dict and origin in (dict, collections.abc.Mapping)) or (
                kind is list and origin in (list, collections.abc.Sequence)
            ):
                return _locate(member, value, where)
        return where, value, hint
    if base in (dict, collections.abc.Mapping) and isinstance(value, dict) and len(args) == 2:
        for key, item in value.items():
            if _accepts(args[1], item) is False:
                return _locate(args[1], item, f"{where}.{key}")
    if base in (list, collections.abc.Sequence) and isinstance(value, (list, tuple)) and args:
        for i, item in enumerate(value):
            if _accepts(args[0], item) is False:
                return _locate(args[0], item, f"{where}[{i}]")
    return where, value, hint


def arguments_of(cls: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """Parameters and annotations of ``cls(...)``; a subclass's ``**kwargs`` are followed into its bases'
    ``__init__``."""
    params: dict[str, inspect.Parameter] = {}
    hints: dict[str, Any] = {}
    for owner in cls.__mro__ if inspect.isclass(cls) else [cls]:
        if inspect.isclass(cls) and "__init__" not in vars(owner):
            continue
        func = vars(owner)["__init__"] if inspect.isclass(cls) else owner
        try:
            found = inspect.signature(func).parameters
        except (TypeError, ValueError):
            return params, hints, True
        with contextlib.suppress(Exception):  # annotations that cannot be evaluated here: types unchecked
            hints = {**typing.get_type_hints(func, include_extras=True), **hints}
        params.update(
            {n: p for n, p in found.items() if n not in params and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        )
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in found.values()):
            return params, hints, False
        if owner is object or not inspect.isclass(cls):
            break
    return params, hints, True


def check_node(node: Any, where: str) -> None:
    """Check every ``_target_`` dict under ``node`` (a plain resolved container) against its class's signature."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            check_node(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    target = node.get("_target_")
    cls = resolve(target) if isinstance(target, str) else None
    if cls is not None and callable(cls):
        params, hints, takes_any = arguments_of(cls)
        own = [n for n in params if n not in ("self", "args", "kwargs")]
        for key, value in node.items():
            if key in SPECIAL:
                continue
            if key not in params and not takes_any and params:
                name, moved = str(target).rsplit(".", 1)[-1], moved_hint(f"{where}.{key}")
                if moved:
                    raise ConfigError(f"{where}.{key}: {moved}")
                raise ConfigError(f"{where}.{key}: {name} has no such setting; its settings are {', '.join(own)}")
            hint = hints.get(key, inspect.Parameter.empty)
            if _accepts(hint, value) is False:
                loc, bad, expected = _locate(hint, value, f"{where}.{key}")
                if typing.get_origin(expected) is Literal:
                    raise ConfigError(f"{loc}={bad!r} is not one of {list(typing.get_args(expected))}")
                raise ConfigError(f"{loc}={bad!r}: expects {_describe(expected)}")
            problem = limit_problem(hint, value, f"{where}.{key}")
            if problem:
                raise ConfigError(problem)
    for key, value in node.items():
        if key != "_target_":
            check_node(value, f"{where}.{key}")


def check_config(cfg: dict, groups: tuple[str, ...] = ("model", "data")) -> None:
    """One-line ConfigError for the first unknown key, wrongly typed value or value out of its range in the given
    groups of a resolved config."""
    for group in groups:
        if isinstance(cfg.get(group), dict):
            check_node(cfg[group], group)
