"""Benchmark methods, one file each; importing this package registers them."""
from . import coop, zeroshot  # noqa: F401
