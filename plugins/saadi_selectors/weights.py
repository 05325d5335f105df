"""Loading local pretrained weights into a freshly built model (never a download).

A user's checkpoint rarely matches the model exactly: the classifier or segmentation head has
another number of classes, ViT position embeddings were trained at another resolution, training
scripts wrap the state dict (``{"state_dict": …}``, ``module.`` prefixes). These helpers read the
common formats, keep every tensor whose name and shape match, and report what was left out so
the caller can refuse a checkpoint that does not fit at all instead of silently training from
scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saadi_core.errors import ConfigError

#: file names looked for when ``pretrained_path`` is a directory (a saved selector first)
_DIRECTORY_FILES = ("model.pt", "model.safetensors", "pytorch_model.bin", "pytorch_model.pt")
#: wrapper keys training scripts put around the actual state dict
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


@dataclass
class LoadReport:
    """What :func:`load_matching` did: counts of tensors loaded and the names left out."""

    loaded: int
    expected: int
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "expected": self.expected,
            "missing": self.missing[:20],
            "mismatched": self.mismatched[:20],
            "unexpected": self.unexpected[:20],
        }


def _resolve_file(path: Path) -> Path:
    if not path.exists():
        raise ConfigError(f"pretrained_path '{path}' does not exist")
    if path.is_file():
        return path
    for name in _DIRECTORY_FILES:
        if (path / name).is_file():
            return path / name
    raise ConfigError(
        f"pretrained_path '{path}' is a directory without any of: {', '.join(_DIRECTORY_FILES)}"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a local checkpoint file (or a directory holding one), unwrapped from the
    usual training-script containers and ``module.`` prefixes (DataParallel / DDP)."""
    file = _resolve_file(Path(path))
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(file))
        else:
            raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign files: the user's input problem
        raise ConfigError(
            f"pretrained_path '{file}' could not be read as a weights file: {type(exc).__name__}: {exc}"
        ) from None
    while isinstance(raw, dict):
        wrapper = next((k for k in _WRAPPER_KEYS if isinstance(raw.get(k), dict)), None)
        if wrapper is None or any(isinstance(v, torch.Tensor) for v in raw.values()):
            break
        raw = raw[wrapper]
    if not isinstance(raw, dict):
        raise ConfigError(
            f"pretrained_path '{file}' holds a {type(raw).__name__}, not a state dict"
        )
    state = {k.removeprefix("module."): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ConfigError(f"pretrained_path '{file}' contains no tensors")
    return state


def count_matching(
    module: torch.nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()
) -> int:
    """How many tensors of ``state`` fit ``module`` by name and shape (ignoring ``skip`` prefixes)."""
    own = module.state_dict()
    return sum(
        1
        for k, v in state.items()
        if not k.startswith(skip) and k in own and own[k].shape == v.shape
    )


def load_matching(
    module: torch.nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()
) -> LoadReport:
    """Copy every tensor of ``state`` that matches ``module`` by name and shape.

    Names starting with a ``skip`` prefix (the task head) are neither loaded nor counted as
    missing: the head keeps its fresh initialisation, which is what fine-tuning for a new set of
    classes needs. Loading uses ``strict=False`` on the filtered dict, so nothing warns.
    """
    own = module.state_dict()
    keep: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    unexpected: list[str] = []
    for key, value in state.items():
        if key.startswith(skip):
            continue
        if key not in own:
            unexpected.append(key)
        elif own[key].shape != value.shape:
            mismatched.append(key)
        else:
            keep[key] = value
    module.load_state_dict(keep, strict=False)
    expected = [k for k in own if not k.startswith(skip)]
    missing = [k for k in expected if k not in keep]
    return LoadReport(
        loaded=len(keep),
        expected=len(expected),
        missing=missing,
        mismatched=mismatched,
        unexpected=unexpected,
    )


def require_fit(report: LoadReport, path: Path, what: str, min_share: float = 0.5) -> None:
    """Refuse a checkpoint that covers less than ``min_share`` of the model's tensors: it is for
    another architecture, and training would silently start from scratch."""
    if report.expected and report.loaded < min_share * report.expected:
        example = (report.mismatched or report.unexpected or report.missing or ["?"])[0]
        raise ConfigError(
            f"pretrained_path '{path}' does not fit {what}: only {report.loaded} of {report.expected} tensors "
            f"match by name and shape (e.g. '{example}')"
        )
