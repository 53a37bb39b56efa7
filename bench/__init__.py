"""Reproducible benchmarks for prompt-tuning CLIP under long-tailed distributions."""

# Part of every result's key: bump it when a change alters results, so that
# earlier results are not mixed with new ones (they stay on disk untouched).
__version__ = "0.4.0"
