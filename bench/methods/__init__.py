"""Benchmark methods, one file each; importing this package registers them."""
from . import candle, cocoop, cocoop_la, coop, coop_la, ivlp, la_posthoc, maple, maple_la, zeroshot  # noqa: F401
from . import mdpr_coop, mdpr_maple  # noqa: F401
from . import cpt, global_etf  # noqa: F401
from . import lamp  # noqa: F401
from . import kgcoop, tcp, tcp_la  # noqa: F401
from . import dekg, dekg_kgcoop  # noqa: F401
from . import mma, mma_la  # noqa: F401
from . import lfa  # noqa: F401
from . import textrefiner  # noqa: F401
from . import lasp  # noqa: F401
from . import plotpp  # noqa: F401
from . import reported_only  # noqa: F401  (cards of systems not run yet)
