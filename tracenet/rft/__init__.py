"""Receptive Field Tracer (paper section 3.1): run any convolutional model only on the windows that influence the
requested outputs, with values equal to the full run's. Knows nothing about segmentation."""

from tracenet.rft.dispatch import register_function_rule, register_module_rule
from tracenet.rft.errors import CaptureError, QueryError, TracerError, UnsupportedOpError
from tracenet.rft.plan import Plan
from tracenet.rft.regions import Rect
from tracenet.rft.rules import PointwiseRule, Rule, WholeRule
from tracenet.rft.tracer import ReceptiveFieldTracer, TraceCache

__all__ = [
    "CaptureError", "Plan", "PointwiseRule", "QueryError", "ReceptiveFieldTracer", "Rect", "Rule", "TraceCache",
    "TracerError", "UnsupportedOpError", "WholeRule", "register_function_rule", "register_module_rule",
]
