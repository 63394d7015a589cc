"""Training: one loop shared by the classify, gan and sr tasks (see loop.py), as Python functions
and as `edgevision train ...`. Needs PyTorch (the `train` extra); importing this package does not,
so the command line can list the subcommands without it.
"""
_PUBLIC = {"train_classify": "api", "train_gan": "api", "train_sr": "api", "fit": "loop", "load_checkpoint": "loop"}


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise ImportError(f"edgevision.train.{name} needs PyTorch: pip install edgevision[train]") from e
    from importlib import import_module

    return getattr(import_module(f".{_PUBLIC[name]}", __name__), name)


__all__ = list(_PUBLIC)
