"""Model definitions, one file per family, and a registry by name.

Needs PyTorch (the `train` extra). `create_model(name, **kwargs)` imports only the family it builds.
"""
try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("edgevision.models needs PyTorch: pip install edgevision[train]") from e

from importlib import import_module

# name -> (module, factory function)
REGISTRY = {
    "seed_cnn": ("cnn", "seed_cnn"),
    "fastnet": ("fastnet", "fastnet"),
    "efficientnet_lite0": ("efficientnet_lite0", "efficientnet_lite0"),
    "resnet18": ("resnet", "resnet18"),
    "mobilenet_v2": ("mobilenet", "mobilenet_v2"),
    "dcgan_generator": ("dcgan", "dcgan_generator"),
    "dcgan_discriminator": ("dcgan", "dcgan_discriminator"),
    "espcn": ("espcn", "espcn"),
}


def create_model(name: str, **kwargs) -> "torch.nn.Module":
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module, factory = REGISTRY[name]
    return getattr(import_module(f".{module}", __name__), factory)(**kwargs)


__all__ = ["REGISTRY", "create_model"]
