"""Running many cells: their plan and state (done, running, stale, failed, to do), local worker
processes (one GPU each), and SLURM job arrays through submitit; every worker takes a cell's lease.
Imports bench.core, bench.config, bench.records, bench.data, bench.model and bench.engine."""
