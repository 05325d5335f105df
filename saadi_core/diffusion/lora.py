"""LoRA adapters on any ``torch.nn.Module`` through peft, without a ``PeftModel`` wrapper.

Why not diffusers' ``add_adapter``/``disable_adapters``: aligners only see a generator's
:meth:`DiffusionTarget.trainable_module`, which may be a diffusers model, a ControlNet, a
transformers text encoder or a plain ``nn.Module`` of a third-party generator. peft's
``inject_adapter_in_model`` works on all of them and replaces the targeted layers in place, so the
generator's own forward code (``predict``) runs through the adapters unchanged; enabling and
disabling is done on peft's tuner layers directly (the same switch diffusers flips). The files
written by :func:`save_lora` are peft's own format (``adapter_config.json`` +
``adapter_model.safetensors``), loadable by peft tools.

Side effect worth knowing: attaching freezes the module's base parameters (``requires_grad =
False``), as peft does — the base network is the frozen reference of Diffusion-DPO. A network that
already carries other peft adapters (e.g. a generator's own style LoRA) is refused: peft would
deactivate them, and the reference would no longer be the generator that samples; such generators
merge their adapters into the base weights first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import (
    LoraConfig,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file

from saadi_core.errors import PipelineError

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "adapters_disabled",
    "adapters_merged",
    "attach_lora",
    "fold_lora",
    "has_lora",
    "load_lora",
    "load_lora_state_dict",
    "lora_config",
    "lora_parameters",
    "lora_state_dict",
    "merge_lora",
    "save_lora",
    "set_adapters_enabled",
    "set_lora_train_mode",
]

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def lora_config(
    target_modules: Sequence[str], rank: int = 8, alpha: float | None = None, dropout: float = 0.0
) -> LoraConfig:
    """A LoRA config; ``alpha`` defaults to ``rank`` (scale 1, so the learning rate does not have to
    change with the rank). ``init_lora_weights=True`` sets B = 0: the adapted module starts equal to
    the base, which is what makes Diffusion-DPO's initial loss exactly ln 2."""
    return LoraConfig(
        r=rank,
        lora_alpha=rank if alpha is None else alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        init_lora_weights=True,
    )


def _tuner_layers(module: torch.nn.Module) -> list[BaseTunerLayer]:
    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


def has_lora(module: torch.nn.Module, adapter_name: str) -> bool:
    """Whether ``module`` already carries the adapter ``adapter_name``."""
    return adapter_name in (getattr(module, "peft_config", None) or {})


def attach_lora(
    module: torch.nn.Module, config: LoraConfig, adapter_name: str
) -> list[torch.nn.Parameter]:
    """Inject a LoRA adapter into ``module`` in place and return its (fp32) trainable parameters.

    Adapter weights are kept in float32 even when the base is bf16/fp16: tiny LoRA updates vanish
    in half precision and fp16 LoRA training is a known NaN source.
    """
    if has_lora(module, adapter_name):
        raise PipelineError(
            f"the network already carries a LoRA adapter named '{adapter_name}'; load a fresh base generator"
        )
    others = sorted(getattr(module, "peft_config", None) or {})
    if others:
        # peft would make the new adapter the only active one, silently switching the generator's own
        # adapters off in both the adapted and the reference network
        raise PipelineError(
            f"the generator's network already carries peft adapter(s) {', '.join(others)}; merge them into the base "
            "weights (peft merge_and_unload / diffusers fuse_lora) before alignment, so the reference is the "
            "generator as it samples"
        )
    try:
        inject_adapter_in_model(config, module, adapter_name=adapter_name)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise PipelineError(
            f"LoRA target modules {sorted(config.target_modules)} do not match the generator's network "
            f"({exc}); set the aligner option target_modules to layer names the network has"
        ) from None
    params = lora_parameters(module, adapter_name)
    for p in params:
        p.data = p.data.float()
    return params


def lora_parameters(module: torch.nn.Module, adapter_name: str) -> list[torch.nn.Parameter]:
    """The parameters of adapter ``adapter_name`` (in ``named_parameters`` order)."""
    marker = f".{adapter_name}."
    return [
        p
        for n, p in module.named_parameters()
        if "lora_" in n and (marker in n or n.endswith(f".{adapter_name}"))
    ]


def set_adapters_enabled(module: torch.nn.Module, enabled: bool) -> None:
    """Switch every LoRA layer of ``module`` on or off (off = the exact base network)."""
    for layer in _tuner_layers(module):
        layer.enable_adapters(enabled)


@contextmanager
def adapters_disabled(module: torch.nn.Module) -> Iterator[None]:
    """Run the base network: within the block every adapter is bypassed, afterwards re-enabled.
    This is how Diffusion-DPO's reference comes from the same weights without a copy."""
    set_adapters_enabled(module, False)
    try:
        yield
    finally:
        set_adapters_enabled(module, True)


def merge_lora(module: torch.nn.Module) -> None:
    """Fold every LoRA adapter of ``module`` into its base weights (peft's layer ``merge``), for a
    network that will only sample from now on.

    Why: an unmerged adapter runs two extra small products beside every adapted layer; on the
    tiny networks that made sampling the aligned generator about 1.8× as slow as the base. Merged,
    the outputs equal the unmerged network's up to float rounding. Do not train or switch
    adapters off afterwards: the base weights are no longer the reference.
    """
    for layer in _tuner_layers(module):
        layer.merge()


def fold_lora(module: torch.nn.Module) -> None:
    """Merge the LoRA adapter into its base weights and take peft's layers out again, leaving the
    network without peft layers or ``peft_config`` (what peft's ``merge_and_unload`` does, which
    exists only on a ``PeftModel`` wrapper). The base parameters stay frozen, as
    :func:`attach_lora` left them.

    Why: an aligner that continues from another's result (the ``sequence`` aligner) must see that
    result as its base: a network carrying the earlier adapter is refused by :func:`attach_lora`,
    and switching adapters off would make Diffusion-DPO's reference the model before the earlier
    aligner instead of after it. Meant for the one adapter :func:`attach_lora` allows: every
    active adapter is merged, an inactive one would be dropped unmerged.
    """
    names = [name for name, m in module.named_modules() if isinstance(m, BaseTunerLayer)]
    # only the outermost peft layers: what sits inside one (lora_A, a wrapped base) goes with it
    outermost = [n for n in names if not any(n.startswith(f"{other}.") for other in names)]
    for name in outermost:
        layer = module.get_submodule(name)
        if hasattr(layer, "unload_and_optionally_merge_module"):  # e.g. MultiheadAttention
            plain = layer.unload_and_optionally_merge_module(
                merge=not layer.merged, safe_merge=False, adapter_names=None
            )
        else:
            if not layer.merged:
                layer.merge()
            plain = layer.get_base_layer()
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent), child, plain)
    if hasattr(module, "peft_config"):
        del module.peft_config


@contextmanager
def adapters_merged(module: torch.nn.Module) -> Iterator[None]:
    """Sample with the adapters folded into the weights, then put back the exact base weights.

    Why: validation samples hundreds of images mid-training, and an unmerged adapter makes that
    about 1.8× as slow on the tiny networks. peft's ``unmerge`` subtracts the update again, which
    leaves the base weights off by float rounding; Diffusion-DPO's reference is those base
    weights, so they are copied back exactly instead.
    """
    layers = _tuner_layers(module)
    saved = [
        [(p, p.detach().clone()) for p in layer.get_base_layer().parameters()] for layer in layers
    ]
    merge_lora(module)
    try:
        yield
    finally:
        for layer, params in zip(layers, saved):
            layer.unmerge()  # peft's bookkeeping (merged flag) ...
            with torch.no_grad():
                for p, original in params:  # ... and the exact weights
                    p.copy_(original)


def set_lora_train_mode(module: torch.nn.Module) -> None:
    """Base network in eval mode, LoRA dropout in train mode.

    The frozen base must behave identically for the adapted and the reference forward — base
    dropout would make them differ by noise and the initial loss would not be ln 2 — while the
    adapter's own dropout is the regulariser the user asked for.
    """
    module.eval()
    for layer in _tuner_layers(module):
        dropout = getattr(layer, "lora_dropout", None)
        if dropout is not None:
            dropout.train()


def lora_state_dict(module: torch.nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
    """A CPU copy of the adapter's weights, keyed as peft saves them (adapter name removed)."""
    state = get_peft_model_state_dict(module, adapter_name=adapter_name)
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def load_lora_state_dict(
    module: torch.nn.Module, state: dict[str, torch.Tensor], adapter_name: str
) -> None:
    """Copy ``state`` (from :func:`lora_state_dict`) into the adapter; every adapter weight must
    be present, so a checkpoint of another network fails instead of half-loading."""
    result = set_peft_model_state_dict(module, state, adapter_name=adapter_name)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [
        k
        for k in getattr(result, "missing_keys", []) or []
        if "lora_" in k and f".{adapter_name}." in k
    ]
    if unexpected or missing:
        example = (unexpected or missing)[0]
        raise PipelineError(
            f"LoRA weights do not fit this network ({len(unexpected)} unexpected, {len(missing)} missing, "
            f"e.g. '{example}'); were they saved for another generator?"
        )


def save_lora(module: torch.nn.Module, adapter_name: str, directory: Path) -> None:
    """Write the adapter as peft does: ``adapter_config.json`` and ``adapter_model.safetensors``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config: LoraConfig = module.peft_config[adapter_name]
    config.save_pretrained(str(directory))
    save_file(lora_state_dict(module, adapter_name), str(directory / WEIGHTS_FILE))


def load_lora(module: torch.nn.Module, directory: Path, adapter_name: str) -> LoraConfig:
    """Attach the adapter saved in ``directory`` to a base ``module`` and load its weights."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise PipelineError(f"LoRA adapter file missing: {path}")
    try:
        config = LoraConfig.from_pretrained(str(directory))
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise PipelineError(f"cannot read LoRA config {config_path}: {exc}") from None
    attach_lora(module, config, adapter_name)
    load_lora_state_dict(module, load_file(str(weights_path)), adapter_name)
    return config
