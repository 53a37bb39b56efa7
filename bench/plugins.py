"""Importing the built-in modules fills the registries: the one loader, above every package.

    load_builtins()          # bench.core.registry.fill_registries() calls it by name
"""


def load_builtins() -> None:
    from bench import data  # noqa: F401  (datasets)
    from bench.model import backbone, synthetic_clip  # noqa: F401  (backbones)
    import methods  # noqa: F401  (methods/)
