"""``diffusion-dpo``: Diffusion-DPO (SAADi Eq. 4) on LoRA adapters, for any diffusion generator.

The aligner talks to a generator only through :class:`saadi_core.interfaces.DiffusionTarget`, so
SSD, SSI and every third-party diffusion generator are aligned by this one loop. What makes it
cheap (``benchmarks/dpo_step.py`` measures it against the straightforward version):

* winners and losers are encoded ONCE up front (VAE/text encoder never run inside the loop);
  every distinct sample is encoded once even when it appears in many pairs;
* the reference is the same network with its adapters switched off, run under
  ``torch.inference_mode`` — no deep copy, no activations kept;
* winner and loser go through ONE forward, concatenated on the batch dim, with the same noise
  and timestep (the layout :func:`saadi_core.diffusion.dpo.diffusion_dpo_loss` expects).

Training runs through an ``accelerate.Accelerator`` (the run's, or one made here): forwards under
its autocast (bf16 when configured; the LoRA weights stay float32), LoRA gradients averaged across
processes, each process drawing its own mini-batches — with N processes the effective batch is
``N × batch_size`` pairs. If the run gives a validator, the adapter state is validated every
``validate_every`` steps (and before the first step), the best state is kept, training stops
after ``patience`` validations without improvement, and the best state is restored at the end.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from saadi_core.diffusion.dpo import DPOLossOutput, diffusion_dpo_loss
from saadi_core.diffusion.lora import (
    adapters_disabled,
    attach_lora,
    has_lora,
    load_lora,
    load_lora_state_dict,
    lora_config,
    lora_parameters,
    lora_state_dict,
    save_lora,
    set_lora_train_mode,
)
from saadi_core.diffusion.targets import training_target
from saadi_core.errors import ConfigError, PipelineError
from saadi_core.interfaces import Aligner, AlignInputs, AlignResult, DiffusionTarget, Generator, PairSet, Sample

#: peft adapter name of this aligner on the generator's network
ADAPTER_NAME = "saadi_dpo"
ADAPTER_DIR = "adapter"
HISTORY_FILE = "history.json"


def diffusion_target_of(generator: Generator, aligner: str = "diffusion-dpo") -> DiffusionTarget:
    """The generator's :class:`DiffusionTarget`, or a clear error for non-diffusion generators."""
    try:
        return generator.diffusion_target()
    except NotImplementedError:
        raise PipelineError(
            f"aligner '{aligner}' needs a diffusion generator, but generator '{generator.kind or type(generator).__name__}' "
            "exposes no diffusion target (Generator.diffusion_target); choose another aligner or generator"
        ) from None


def _cat_cond(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def _index_cond(cond: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value[index] for key, value in cond.items()}


@dataclass
class PreferenceCache:
    """Encoded preference pairs: each distinct sample's ``x0`` and conditioning once (host memory),
    and per pair the rows of its winner and loser."""

    x0: torch.Tensor
    cond: dict[str, torch.Tensor]
    winners: torch.Tensor
    losers: torch.Tensor

    def __len__(self) -> int:
        return int(self.winners.shape[0])

    def batch(self, pair_index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``x0`` and ``cond`` of the given pairs as ``2B`` rows: winners, then their losers."""
        rows = torch.cat([self.winners[pair_index], self.losers[pair_index]])
        x0 = self.x0[rows].to(device)
        return x0, {k: v.to(device) for k, v in _index_cond(self.cond, rows).items()}


def encode_pairs(target: DiffusionTarget, pairs: PairSet, chunk: int) -> PreferenceCache:
    """Encode every distinct winner/loser once (in chunks of ``chunk`` samples).

    Runs under ``no_grad`` rather than ``inference_mode``: the cached conditioning feeds adapted
    layers later, and autograd may not save inference tensors for backward.
    """
    unique: list[Sample] = []
    row_of: dict[int, int] = {}
    winners, losers = [], []
    for pair in pairs:
        for sample, rows in ((pair.winner, winners), (pair.loser, losers)):
            if id(sample) not in row_of:
                row_of[id(sample)] = len(unique)
                unique.append(sample)
            rows.append(row_of[id(sample)])
    x0_parts, cond_parts = [], []
    with torch.no_grad():
        for start in range(0, len(unique), chunk):
            x0, cond = target.encode(unique[start : start + chunk])
            x0_parts.append(x0.detach().to("cpu"))
            cond_parts.append({k: v.detach().to("cpu") for k, v in cond.items()})
    return PreferenceCache(
        x0=torch.cat(x0_parts),
        cond=_cat_cond(cond_parts),
        winners=torch.tensor(winners, dtype=torch.long),
        losers=torch.tensor(losers, dtype=torch.long),
    )


def reference_prediction(
    target: DiffusionTarget, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]
) -> torch.Tensor:
    """The frozen base's prediction: the same network with adapters off, keeping no graph."""
    with torch.inference_mode(), adapters_disabled(target.trainable_module()):
        return target.predict(x_t, t, cond)


def dpo_forward(
    target: DiffusionTarget,
    x0: torch.Tensor,
    cond: dict[str, torch.Tensor],
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    beta: float,
    sft_weight: float = 0.0,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> DPOLossOutput:
    """Eq. 4 for ``2B`` rows (winners then losers) with ``noise``/``timesteps`` already shared by
    each winner and its loser: one reference forward (no graph) + one adapted forward."""
    scheduler = target.noise_scheduler
    x_t = scheduler.add_noise(x0, noise, timesteps)
    goal = training_target(scheduler, x0, noise, timesteps)
    with autocast():
        ref = reference_prediction(target, x_t, timesteps, cond)
        pred = target.predict(x_t, timesteps, cond)
    return diffusion_dpo_loss(pred, ref, goal, beta=beta, sft_weight=sft_weight)


def set_gradient_checkpointing(module: torch.nn.Module, enabled: bool) -> None:
    """Switch activation checkpointing on every diffusers model inside ``module`` (diffusers checks
    only ``torch.is_grad_enabled()``, so it works with the base in eval mode; transformers models
    checkpoint only in train mode and are left alone)."""
    found = False
    for sub in module.modules():
        if getattr(sub, "_supports_gradient_checkpointing", False) and hasattr(sub, "enable_gradient_checkpointing"):
            sub.enable_gradient_checkpointing() if enabled else sub.disable_gradient_checkpointing()
            found = True
    if enabled and not found:
        raise ConfigError(
            "aligner option gradient_checkpointing=true, but the generator's network contains no diffusers model "
            "that supports it; set it to false"
        )


class PairSampler:
    """Mini-batches of pair indices from a stream of seeded permutations: every pair is used once
    per epoch, batches are always full (the stream continues into the next permutation)."""

    def __init__(self, n_pairs: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.rng = n_pairs, batch_size, generator
        self._buffer = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while self._buffer.numel() < self.batch_size:
            self._buffer = torch.cat([self._buffer, torch.randperm(self.n, generator=self.rng)])
        batch, self._buffer = self._buffer[: self.batch_size], self._buffer[self.batch_size :]
        return batch


class _Selection:
    """Best-adapter bookkeeping for validation-based checkpoint selection and early stopping."""

    def __init__(self, metric: str, mode: str, min_delta: float, patience: int) -> None:
        self.metric, self.mode, self.min_delta, self.patience = metric, mode, min_delta, patience
        self.best_value: float | None = None
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.misses = 0

    def update(self, step: int, metrics: dict[str, float], state: Callable[[], dict[str, torch.Tensor]]) -> bool:
        """Record a validation; True when training should stop (patience exhausted)."""
        if self.metric not in metrics:
            raise ConfigError(
                f"aligner option select_metric='{self.metric}' is not a validation metric; available: "
                + ", ".join(sorted(metrics))
            )
        value = float(metrics[self.metric])
        if self.best_value is None:
            better = True
        elif self.mode == "max":
            better = value > self.best_value + self.min_delta
        else:
            better = value < self.best_value - self.min_delta
        if better:
            self.best_value, self.best_step, self.best_state, self.misses = value, step, state(), 0
        else:
            self.misses += 1
        return self.misses >= self.patience


@dataclass
class _Loop:
    """What one optimiser step needs, set up once per alignment."""

    target: DiffusionTarget
    cache: PreferenceCache
    sampler: PairSampler
    rng: torch.Generator
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    accelerator: Any
    autocast: Callable[[], AbstractContextManager[Any]]
    device: torch.device
    beta: float
    sft_weight: float
    grad_clip: float

    def step(self) -> tuple[DPOLossOutput, float]:
        """One step on a fresh mini-batch; returns the loss output and the pre-clip gradient norm."""
        x0, cond = self.cache.batch(self.sampler.next(), self.device)
        half = x0.shape[0] // 2
        n_timesteps = int(self.target.noise_scheduler.config.num_train_timesteps)
        noise = torch.randn((half, *x0.shape[1:]), generator=self.rng).to(self.device, x0.dtype)
        t = torch.randint(0, n_timesteps, (half,), generator=self.rng).to(self.device)
        out = dpo_forward(self.target, x0, cond, torch.cat([noise, noise]), torch.cat([t, t]), self.beta, self.sft_weight, self.autocast)
        if not math.isfinite(out.metrics()["loss"]):
            raise PipelineError("diffusion-dpo: non-finite loss; lower lr or use bf16 instead of fp16 forwards")
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(out.loss)
        if self.accelerator.num_processes > 1:  # each process drew its own pairs: average the gradients
            for p in self.params:
                if p.grad is not None:
                    p.grad = self.accelerator.reduce(p.grad, reduction="mean")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip))
        self.optimizer.step()
        return out, grad_norm


class DiffusionDPO(Aligner):
    """Diffusion-DPO on LoRA adapters (options: :class:`saadi_align.options.DiffusionDPOOptions`).

    If the generator's network already carries this aligner's adapter (iterative refinement with
    ``continue_from_previous``), training continues from those weights; the reference is always
    the base network (adapters off), which anchors every round to the same model.
    """

    kind = "diffusion-dpo"

    # ------------------------------------------------------------------ align

    def align(self, generator: Generator, inputs: AlignInputs, work_dir: Path) -> AlignResult:
        opts = self.options
        pairs = inputs.pairs
        if len(pairs) == 0:
            stats = pairs.stats
            raise PipelineError(
                "no preference pairs to align on "
                f"({len(stats.get('conditions_without_winner', []))} condition(s) without a winner, "
                f"{len(stats.get('conditions_without_loser', []))} without a loser): lower the threshold h, "
                "enlarge the pool (pool.n_per_condition) or train the generator longer"
            )
        target = diffusion_target_of(generator, self.kind)
        module = target.trainable_module()
        seed = inputs.seed if opts.seed is None else opts.seed
        accelerator = self._accelerator(module)
        device = next(module.parameters()).device
        progress = self.context.progress

        continued = has_lora(module, ADAPTER_NAME)
        if continued:
            params = lora_parameters(module, ADAPTER_NAME)
            for p in params:
                p.requires_grad_(True)
        else:
            config = lora_config(opts.target_modules or target.lora_target_modules(), opts.rank, opts.alpha, opts.dropout)
            with torch.random.fork_rng(devices=[]):  # same LoRA init on every process, global RNG untouched
                torch.manual_seed(seed)
                params = attach_lora(module, config, ADAPTER_NAME)

        started = time.perf_counter()
        cache = encode_pairs(target, pairs, opts.encode_batch_size)
        encode_seconds = time.perf_counter() - started

        rng = torch.Generator().manual_seed(seed * 7919 + accelerator.process_index)
        loop = _Loop(
            target=target,
            cache=cache,
            sampler=PairSampler(len(cache), opts.batch_size, rng),
            rng=rng,
            optimizer=torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay),
            params=params,
            accelerator=accelerator,
            autocast=self._autocast(accelerator, device),
            device=device,
            beta=opts.beta,
            sft_weight=opts.sft_weight,
            grad_clip=opts.grad_clip,
        )
        history: list[dict[str, Any]] = []
        selection = _Selection(opts.select_metric, opts.select_mode, opts.min_delta, opts.patience)
        was_training = module.training

        def record(event: str, fields: dict[str, Any]) -> None:
            history.append({"event": event, **fields})
            progress.log(event, **fields)

        def validate(step: int) -> bool:
            metrics = {k: float(v) for k, v in inputs.validate(generator).items()}  # type: ignore[misc]
            set_lora_train_mode(module)  # sampling may have switched modes
            record("dpo_validate", {"step": step, **metrics})
            return selection.update(step, metrics, lambda: lora_state_dict(module, ADAPTER_NAME))

        set_lora_train_mode(module)
        if opts.gradient_checkpointing:
            set_gradient_checkpointing(module, True)
        stopped_early = False
        last_step = 0
        started = time.perf_counter()
        try:
            if inputs.validate is not None:
                validate(0)
            for step in progress.track(range(1, opts.steps + 1), "diffusion-dpo", total=opts.steps):
                last_step = step
                out, grad_norm = loop.step()
                record("dpo_step", {"step": step, **out.metrics(), "grad_norm": grad_norm})
                if inputs.validate is not None and (step % opts.validate_every == 0 or step == opts.steps):
                    if validate(step):
                        stopped_early = step < opts.steps
                        break
        finally:
            if opts.gradient_checkpointing:
                set_gradient_checkpointing(module, False)
            module.train(was_training)
        train_seconds = time.perf_counter() - started

        lora = module.peft_config[ADAPTER_NAME]
        meta: dict[str, Any] = {
            "n_pairs": len(cache),
            "n_encoded_samples": int(cache.x0.shape[0]),
            "steps_run": last_step,
            "stopped_early": stopped_early,
            "continued_from_existing_adapter": continued,
            "beta": opts.beta,
            "beta_convention": "Eq. 4 beta (= beta_dpo / 2 of the diffusers Diffusion-DPO example)",
            "lora": {
                "adapter_name": ADAPTER_NAME,
                "rank": lora.r,
                "alpha": lora.lora_alpha,
                "dropout": lora.lora_dropout,
                "target_modules": sorted(lora.target_modules),
                "trainable_parameters": sum(p.numel() for p in params),
            },
            "num_processes": accelerator.num_processes,
            "mixed_precision": opts.mixed_precision or str(accelerator.mixed_precision),
            "encode_seconds": round(encode_seconds, 3),
            "seconds_per_step": round(train_seconds / max(last_step, 1), 4),
        }
        if inputs.validate is not None and selection.best_state is not None:
            load_lora_state_dict(module, selection.best_state, ADAPTER_NAME)
            start = "the starting adapters" if continued else "the base model"
            meta.update(
                select_metric=opts.select_metric,
                best_step=selection.best_step,
                best_metric=selection.best_value,
                selected=f"step {selection.best_step}" if selection.best_step else start,
                aligned_equals_base=selection.best_step == 0 and not continued,
            )
            if meta["aligned_equals_base"]:
                meta["note"] = (
                    f"no DPO step improved validation {opts.select_metric} over the base model; "
                    "the aligned generator equals the base"
                )
        else:
            meta.update(best_step=last_step, selected="final", aligned_equals_base=False)
        return AlignResult(generator=generator, history=history, meta=meta)

    def _accelerator(self, module: torch.nn.Module) -> Any:
        """The run's accelerator, or a single-process one for the network's device."""
        if self.context.accelerator is not None:
            return self.context.accelerator
        from accelerate import Accelerator

        return Accelerator(cpu=next(module.parameters()).device.type == "cpu")

    def _autocast(self, accelerator: Any, device: torch.device) -> Callable[[], AbstractContextManager[Any]]:
        """Forward precision: the option if set (independent of the process-wide accelerate state,
        which cannot change once created), else the accelerator's setting."""
        choice = self.options.mixed_precision
        if choice is None:
            return accelerator.autocast
        if choice == "bf16":
            return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
        return nullcontext

    # ------------------------------------------------------------------ persistence

    def save(self, result: AlignResult, path: Path) -> None:
        """``adapter/`` (peft ``adapter_config.json`` + ``adapter_model.safetensors``) and
        ``history.json`` (history + meta)."""
        path = Path(path)
        module = diffusion_target_of(result.generator, self.kind).trainable_module()
        if not has_lora(module, ADAPTER_NAME):
            raise PipelineError(f"nothing to save: the generator carries no '{ADAPTER_NAME}' adapter")
        save_lora(module, ADAPTER_NAME, path / ADAPTER_DIR)
        (path / HISTORY_FILE).write_text(json.dumps({"history": result.history, "meta": result.meta}, indent=1))

    def restore(self, generator: Generator, path: Path) -> Generator:
        """Attach the saved adapter to a freshly loaded base ``generator``'s network."""
        module = diffusion_target_of(generator, self.kind).trainable_module()
        load_lora(module, Path(path) / ADAPTER_DIR, ADAPTER_NAME)
        return generator
