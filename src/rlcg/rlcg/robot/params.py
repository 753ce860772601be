"""Node settings as flat dataclasses that map one to one onto ROS 2 parameters.

Every field of a settings dataclass is a ROS parameter of the same name (bool, int, float, str or
a list of one of them), so an rclpy node declares its parameters from the dataclass and builds it
back with ``settings_from_params``; the same YAML file (``config/<node>.yaml``, ROS parameter
format) is read here without ROS, which is how the tests check the shipped files.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from rlcg.configio import ConfigError, from_dict, load_yaml

T = TypeVar("T")


def read_node_params(path: str | Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``node_name`` in a ROS 2 parameter file (``/**`` entries too).

    Later, more specific entries win, as with ``ros2 run ... --params-file``: ``/**`` first,
    then ``/**/node_name`` (the node in any namespace), ``node_name`` and ``/node_name``.
    """
    data = load_yaml(path)
    merged: dict[str, Any] = {}
    for key in ("/**", f"/**/{node_name}", node_name, f"/{node_name}"):
        entry = data.get(key)
        if entry is None:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("ros__parameters"), dict):
            raise ConfigError(f"{path}: {key!r} needs a 'ros__parameters' mapping")
        merged.update(_flatten(entry["ros__parameters"]))
    if not merged:
        raise ConfigError(f"{path}: no parameters for node {node_name!r} (expected '{node_name}: ros__parameters:')")
    return merged


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{name}."))
        else:
            out[name] = v
    return out


def settings_from_params(cls: type[T], params: dict[str, Any], where: str = "") -> T:
    """Build settings ``cls`` from flat parameters; ROS hands lists as tuples or arrays, and an
    integer where a float is declared, which are normalised first."""
    hints = get_type_hints(cls)
    clean: dict[str, Any] = {}
    for name, value in params.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, tuple):
            value = list(value)
        if hints.get(name) is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        clean[name] = value
    return from_dict(cls, clean, where or cls.__name__)


def param_defaults(cls: type) -> dict[str, Any]:
    """Field name -> default value, in declaration order (what a node declares)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name} needs a default to be a ROS parameter")
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    ok = math.isfinite(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be within {bracket}{low}, {high}], got {value}")


def check_interval(name: str, pair: tuple[float, ...] | list[float]) -> tuple[float, float]:
    if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or not pair[0] < pair[1]:
        raise ConfigError(f"{name} must be [low, high] with low < high, got {list(pair)}")
    return float(pair[0]), float(pair[1])


def misspelled_parameters(given: Any, declared: Any) -> dict[str, str]:
    """Parameters given to a node (its overrides) that it does not declare but that look like one it
    does, each with the declared name it resembles. A node ignores an undeclared parameter, so
    ``velocity_scalling: 0.5`` in a file would leave the default in force without a word. Names of
    other software in the same process (MoveIt's, dotted or not) resemble none of ours and pass."""
    import difflib

    declared = set(declared)
    found = {}
    for name in set(given) - declared:
        if "." in name:  # nested keys belong to other software; rlcg's parameters are flat
            continue
        close = difflib.get_close_matches(name, declared, n=1, cutoff=0.8)
        if not close:
            close = [d for d in declared if d.lower() == name.lower()]
        if close:
            found[name] = close[0]
    return found
