"""One cell, start to finish: the runner (seed, build, train, evaluate, record), the training
loop, evaluation label spaces, metrics, and the results store.
Imports bench.core, bench.config, bench.records, bench.data and bench.model."""
