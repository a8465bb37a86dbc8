"""Efficiency measurements (paper table 3): ``tracenet bench --out DIR``."""
