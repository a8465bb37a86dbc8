"""Errors raised by the Receptive Field Tracer. Every message names the graph node and its op."""

from __future__ import annotations

import torch.fx as fx


def describe(node: fx.Node) -> str:
    """``"node 'conv1' (call_module conv1: Conv2d)"``-style description used in error messages."""
    target = node.target
    if node.op == "call_module":
        owner = node.graph.owning_module
        try:
            kind = type(owner.get_submodule(str(target))).__name__ if owner is not None else "?"
        except AttributeError:
            kind = "?"
        target = f"{target}: {kind}"
    elif callable(target):
        target = f"{getattr(target, '__module__', '') or ''}.{getattr(target, '__name__', repr(target))}".lstrip(".")
    return f"node '{node.name}' ({node.op} {target})"


class TracerError(RuntimeError):
    """Base class: the tracer cannot give an exact answer for this model or query."""


class CaptureError(TracerError):
    """torch.fx could not capture the model (data-dependent control flow, unsupported Python)."""


class UnsupportedOpError(TracerError):
    """The graph contains an op the tracer has no rule for; it refuses rather than guess."""

    def __init__(self, node: fx.Node, why: str = "") -> None:
        self.node_name = node.name
        self.target = node.target
        msg = f"Receptive Field Tracer has no rule for {describe(node)}"
        if why:
            msg += f": {why}"
        msg += (
            ". Add a rule in tracenet/rft/dispatch.py (or register one with "
            "tracenet.rft.register_module_rule / register_function_rule)."
        )
        super().__init__(msg)


class QueryError(TracerError, ValueError):
    """A query names an output key that does not exist or a location outside that output's grid."""
