"""Importing the built-in modules fills the registries."""


def load_builtins() -> None:
    from . import backbone, data, synthetic_clip  # noqa: F401  (backbones, datasets)
    import methods  # noqa: F401  (methods/)
