"""Check a composed config against the signatures of the classes it names, before anything is built.

The constructors of the networks, games and datamodules are the one place where each argument's type and default
is written; this module reads their annotations and refuses, with one line, a key no constructor takes or a value
of the wrong type: ``error: model.latent_dim='abc': expects an integer``. Ranges are checked by the constructors.
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import types
import typing
from typing import Any

from gan_lightning.errors import ConfigError

SPECIAL = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def _resolve(target: str):
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
    """Parameters and annotations of ``cls(...)``; a subclass's ``**kwargs`` are followed into its bases' ``__init__``."""
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
        try:
            hints = {**typing.get_type_hints(func), **hints}
        except Exception:  # noqa: BLE001 - annotations that cannot be evaluated here: types unchecked
            pass
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
    cls = _resolve(target) if isinstance(target, str) else None
    if cls is not None and callable(cls):
        params, hints, takes_any = arguments_of(cls)
        own = [n for n in params if n not in ("self", "args", "kwargs")]
        for key, value in node.items():
            if key in SPECIAL:
                continue
            if key not in params and not takes_any and params:
                raise ConfigError(
                    f"{where}.{key}: {str(target).rsplit('.', 1)[-1]} has no such setting; its settings are {', '.join(own)}"
                )
            hint = hints.get(key, inspect.Parameter.empty)
            if _accepts(hint, value) is False:
                loc, bad, expected = _locate(hint, value, f"{where}.{key}")
                raise ConfigError(f"{loc}={bad!r}: expects {_describe(expected)}")
    for key, value in node.items():
        if key != "_target_":
            check_node(value, f"{where}.{key}")


def check_config(cfg: dict, groups: tuple[str, ...] = ("model", "data")) -> None:
    """One-line ConfigError for the first unknown key or wrongly typed value in the given groups of a resolved config."""
    for group in groups:
        if isinstance(cfg.get(group), dict):
            check_node(cfg[group], group)
