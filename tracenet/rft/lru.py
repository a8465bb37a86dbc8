"""Least-recently-used stores (an ``OrderedDict`` and two functions): the tracer's plan memo and group plans, and
a layout's schedules of cropped steps."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


def recall(store: OrderedDict, key: tuple) -> Any:
    """``store[key]`` or None, marked as the most recently used."""
    value = store.get(key)
    if value is not None:
        store.move_to_end(key)
    return value


def keep(store: OrderedDict, key: tuple, value: Any, limit: int) -> Any:
    """Store ``value`` (returned), dropping the least recently used entries beyond ``limit``."""
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)
    return value
