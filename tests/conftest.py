"""Test-wide settings: hypothesis explores new examples locally, and replays a fixed set under CI=true."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
