"""Benchmark methods, one file each; importing this package registers them."""
from . import coop, coop_la, ivlp, maple, maple_la, zeroshot  # noqa: F401
