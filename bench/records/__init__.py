"""The result record: its format, paths and key (``schema``) and the metric names tables rank by
(``headline``).  Stands on ``bench.core`` only; the engine writes records through it and reporting
reads them through it, so neither imports the other."""
