"""Glue shared by the rlcg nodes: parameters declared from a settings dataclass, start-up errors,
and spinning. Kept free of any node logic (that lives in rlcg.robot)."""

from __future__ import annotations

import contextlib
import sys
import typing
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from rlcg.errors import RlcgError
from rlcg.robot.params import param_defaults, settings_from_params

_PARAM_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list[float]: ParameterType.PARAMETER_DOUBLE_ARRAY,
    list[int]: ParameterType.PARAMETER_INTEGER_ARRAY,
    list[str]: ParameterType.PARAMETER_STRING_ARRAY,
}


def declare_settings(node: Node, cls: type, prefix: str = ""):
    """Declare one ROS parameter per field of ``cls`` (typed, so empty lists work) and build ``cls``
    from their values; a bad value raises rlcg's ConfigError naming the parameter."""
    hints = typing.get_type_hints(cls)
    values = {}
    for name, default in param_defaults(cls).items():
        descriptor = ParameterDescriptor(type=_PARAM_TYPES[hints[name]], description=f"{cls.__name__}.{name}")
        param = node.declare_parameter(prefix + name, default, descriptor)
        values[name] = param.value
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
        with contextlib.suppress(KeyboardInterrupt):
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
