"""Device resolution: ``auto`` picks CUDA when present, else CPU (kept out of import paths that
must stay torch-free)."""

from __future__ import annotations

from saadi_core.errors import ConfigError


def resolve_device(name: str = "auto") -> str:
    """A torch device string for ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device '{name}' requested but CUDA is not available on this machine (use --device cpu)"
        )
    return name
