"""From result records to tables: the tidy results table, leaderboards, report specs, paper
tables (markdown, LaTeX, HTML), significance tests and plots.
Imports bench.core, bench.config and bench.records; never torch."""
