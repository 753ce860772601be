"""Glue shared by the rlcg nodes: parameters declared from a settings dataclass, start-up errors,
and spinning. Kept free of any node logic (that lives in rlcg.robot)."""

from __future__ import annotations

import contextlib
import sys
import typing
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from rlcg.configio import ConfigError
from rlcg.errors import RlcgError
from rlcg.robot.params import misspelled_parameters, param_defaults, settings_from_params

_PARAM_TYPES = {  # statically typed; float and list fields are dynamically typed (declare_settings)
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    str: ParameterType.PARAMETER_STRING,
}


def declare_settings(node: Node, cls: type, prefix: str = ""):
    """Declare one ROS parameter per field of ``cls`` and build ``cls`` from their values; a bad
    value raises rlcg's ConfigError naming the parameter.

    Float and list fields are dynamically typed, and rlcg checks their values: rclpy would type an
    empty default list as a byte array (then refuse a list of numbers for it) and refuse an integer
    for a float (``-p decision_period_s:=1``). A parameter left unset (a file cannot hold ``[]``)
    takes the field's default."""
    hints = typing.get_type_hints(cls)
    values = {}
    for name, default in param_defaults(cls).items():
        hint = hints[name]
        description = f"{cls.__name__}.{name}"
        if hint is float or typing.get_origin(hint) is list:
            descriptor = ParameterDescriptor(description=description, dynamic_typing=True)
        else:
            descriptor = ParameterDescriptor(type=_PARAM_TYPES[hint], description=description)
        param = node.declare_parameter(prefix + name, default, descriptor)
        values[name] = default if param.value is None else param.value
    # rclpy keeps the parameters a node was started with (files, -p) in _parameter_overrides.
    given = [n[len(prefix) :] for n in getattr(node, "_parameter_overrides", {}) if n.startswith(prefix)]
    typos = misspelled_parameters(given, param_defaults(cls))
    if typos:
        wrong = ", ".join(f"{name!r} (did you mean {right!r}?)" for name, right in sorted(typos.items()))
        raise ConfigError(f"{node.get_name()}: unknown parameter(s) {wrong}; they would be ignored")
    return settings_from_params(cls, values, f"{node.get_name()} parameters")


def run(make_node: Callable[[], Node], threads: int = 4) -> int:
    """Create the node (start-up errors: one clear line, exit status 2) and spin it."""
    rclpy.init(args=sys.argv)
    node = None
    try:
        try:
            node = make_node()
        except RlcgError as exc:
            print(f"[FATAL] {exc}", file=sys.stderr)
            return 2
        executor = MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        # Ctrl-C, or SIGTERM from ros2 launch (Jazzy: ExternalShutdownException): a normal stop
        with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):
            executor.spin()
        return 0
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def now_ns(node: Node) -> int:
    return node.get_clock().now().nanoseconds


def ros_type(msgtype: str):
    """The rclpy message class of a 'pkg/msg/Name' type string."""
    import importlib

    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
