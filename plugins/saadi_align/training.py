"""What every LoRA aligner shares: adapter set-up, the optimiser loop, validation, checkpoint
selection, early stopping and persistence.

``diffusion-dpo``, ``sft-winners`` and ``diffusion-kto`` differ only in the data they encode and
the loss of one mini-batch; :class:`LoraAligner` owns everything else, so the three are validated,
selected and saved the same way and an improvement in one of these rules reaches all of them.

Checkpoint selection (``select_rule``):

* ``point``: keep the adapter state with the best validation ``select_metric`` (a point estimate);
* ``lcb`` (tiny default): the validator samples the SAME seeds at every validation, so each
  validation sample of a candidate has a partner in the starting model's validation (step 0). The
  rule keeps the state with the largest *lower confidence bound* of the paired mean difference
  candidate − start (one-sided, ``lcb_confidence``), and only if that bound is above 0: a
  candidate whose gain could be chance is not kept. It needs per-sample values from the validator
  (``metrics["per_sample"][select_metric]``); without them it falls back to ``point`` and says so.

* ``noninferior``: keep the LATEST state unless its paired difference to the start is significantly
  negative (one-sided upper bound below 0). For moves the selector cannot resolve: an on-policy
  round was measured to raise the oracle pass while the selector's pass stayed flat, so ``lcb``
  refused it (docs/benchmarks.md). It still refuses what the selector sees as harm.

``condition_guard`` adds a veto to ``lcb``: one adapter serves every condition, and on toy-cls it
was measured to buy gains on some classes with losses on others (docs/benchmarks.md). With the
validator's condition of each sample (``metrics["groups"]``), a candidate is refused when any
condition's paired difference to the start has its one-sided *upper* bound below 0 — that
condition got significantly worse, whatever the total says.

When the validator's conditions are a random draw of layouts the generator never saw
(``metrics["sampled_conditions"]``: the run evaluates on unseen layouts), the bounds are taken over
the conditions' mean differences, not over the samples: samples of one layout are not independent
draws, and an adapter helps some layouts and hurts others. Measured on toy-seg with 16 validation
layouts: a state whose selector-pass gain had a sample-level bound of +7.9 points lowered the
oracle pass of the evaluation's 16 other layouts by 8 points (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from statistics import NormalDist
from typing import Any

import torch

from saadi_core.diffusion.lora import (
    adapters_merged,
    attach_lora,
    has_lora,
    load_lora,
    load_lora_state_dict,
    lora_config,
    lora_parameters,
    lora_state_dict,
    merge_lora,
    save_lora,
    set_lora_train_mode,
)
from saadi_core.errors import ConfigError, PipelineError
from saadi_core.interfaces import (
    Aligner,
    AlignInputs,
    AlignResult,
    DiffusionTarget,
    Generator,
    Sample,
)

ADAPTER_DIR = "adapter"
HISTORY_FILE = "history.json"
#: validation entry holding per-sample values (lists aligned with the validator's fixed seeds)
PER_SAMPLE = "per_sample"
#: validation entry holding each per-sample value's condition id (for ``condition_guard``)
GROUPS = "groups"
#: the validator's flag: its conditions are a random draw of layouts (bounds count conditions)
SAMPLED_CONDITIONS = "sampled_conditions"

#: one optimiser step's loss (differentiable) and its logged diagnostics (floats)
StepOutput = tuple[torch.Tensor, dict[str, float]]


def diffusion_target_of(generator: Generator, aligner: str) -> DiffusionTarget:
    """The generator's :class:`DiffusionTarget`, or a clear error for non-diffusion generators."""
    try:
        return generator.diffusion_target()
    except NotImplementedError:
        raise PipelineError(
            f"aligner '{aligner}' needs a diffusion generator, but generator '{generator.kind or type(generator).__name__}' "
            "exposes no diffusion target (Generator.diffusion_target); choose another aligner or generator"
        ) from None


def cat_cond(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def index_cond(cond: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value[index] for key, value in cond.items()}


def encode_samples(
    target: DiffusionTarget, samples: Sequence[Sample], chunk: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``x0`` and conditioning of ``samples`` (host memory), encoded in chunks of ``chunk``.

    Runs under ``no_grad`` rather than ``inference_mode``: the cached conditioning feeds adapted
    layers later, and autograd may not save inference tensors for backward."""
    x0_parts, cond_parts = [], []
    with torch.no_grad():
        for start in range(0, len(samples), chunk):
            x0, cond = target.encode(samples[start : start + chunk])
            x0_parts.append(x0.detach().to("cpu"))
            cond_parts.append({k: v.detach().to("cpu") for k, v in cond.items()})
    return torch.cat(x0_parts), cat_cond(cond_parts)


def per_sample_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample over all non-batch elements, in float32 (under bf16 autocast
    a model/reference difference is far below bf16 resolution) — the error every loss here uses."""
    return (target.float() - pred.float()).pow(2).flatten(1).mean(dim=1)


class IndexSampler:
    """Mini-batches of indices from a stream of seeded permutations: every item is used once per
    epoch, batches are always full (the stream continues into the next permutation)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.rng = n, batch_size, generator
        self._buffer = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while self._buffer.numel() < self.batch_size:
            self._buffer = torch.cat([self._buffer, torch.randperm(self.n, generator=self.rng)])
        batch, self._buffer = self._buffer[: self.batch_size], self._buffer[self.batch_size :]
        return batch


#: selection rules that compare each validation with the first one, sample by sample
PAIRED_RULES = ("lcb", "noninferior")


def lower_bound(differences: Sequence[float], confidence: float) -> float:
    """One-sided lower confidence bound of the mean of paired ``differences`` (normal
    approximation: mean − z·sd/√n; exact 0 when all differences are 0)."""
    n = len(differences)
    if n == 0:
        return -math.inf
    mean = sum(differences) / n
    if n == 1:
        return mean if mean == 0 else -math.inf
    var = sum((d - mean) ** 2 for d in differences) / (n - 1)
    return mean - NormalDist().inv_cdf(confidence) * math.sqrt(var / n)


def upper_bound(differences: Sequence[float], confidence: float) -> float:
    """One-sided upper confidence bound of the mean of paired ``differences`` (below 0: the
    candidate is significantly worse than the start)."""
    return -lower_bound([-d for d in differences], confidence)


def by_condition(
    differences: Sequence[float], groups: Sequence[str] | None, needed_by: str
) -> list[list[float]]:
    """``differences`` split by their condition (``groups``: one id per difference)."""
    if groups is None or len(groups) != len(differences):
        raise PipelineError(
            f"{needed_by} needs the validator's condition of every validation sample "
            f"('{GROUPS}': one id per sample); this validator gives none"
        )
    split: dict[str, list[float]] = {}
    for diff, group in zip(differences, groups):
        split.setdefault(str(group), []).append(diff)
    return list(split.values())


def condition_means(differences: Sequence[float], groups: Sequence[str] | None) -> list[float]:
    """The mean of ``differences`` within each condition: the units of a bound over layouts."""
    return [
        sum(values) / len(values)
        for values in by_condition(differences, groups, f"'{SAMPLED_CONDITIONS}'")
    ]


def worst_condition_bound(
    differences: Sequence[float], groups: Sequence[str] | None, confidence: float
) -> float:
    """The smallest one-sided upper confidence bound over the conditions' paired mean differences:
    below 0 means some condition got significantly worse. Needs each difference's condition."""
    return min(
        upper_bound(values, confidence)
        for values in by_condition(differences, groups, "condition_guard")
    )


class Selection:
    """Best-adapter bookkeeping for validation-based checkpoint selection and early stopping
    (rules: module docstring)."""

    def __init__(
        self,
        metric: str,
        mode: str,
        min_delta: float,
        patience: int,
        rule: str = "point",
        confidence: float = 0.95,
        condition_guard: bool = False,
    ) -> None:
        self.metric, self.mode, self.min_delta, self.patience = metric, mode, min_delta, patience
        self.rule, self.confidence, self.condition_guard = rule, confidence, condition_guard
        self.best_value: float | None = None
        self.best_lcb: float | None = None
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.misses = 0
        self.start: list[float] | None = None  # per-sample values of the first validation
        self.fallback: str | None = None

    def update(
        self, step: int, metrics: dict[str, Any], state: Callable[[], dict[str, torch.Tensor]]
    ) -> tuple[bool, dict[str, float]]:
        """Record a validation; returns (stop: patience exhausted, extra fields to log)."""
        if self.metric not in metrics:
            raise ConfigError(
                f"aligner option select_metric='{self.metric}' is not a validation metric; available: "
                + ", ".join(sorted(k for k in metrics if k not in (PER_SAMPLE, GROUPS)))
            )
        value = float(metrics[self.metric])
        per_sample = (metrics.get(PER_SAMPLE) or {}).get(self.metric)
        if self.rule in PAIRED_RULES and per_sample is None and self.fallback is None:
            self.fallback = f"the validator gives no per-sample '{self.metric}', so the kept state was chosen by its point value"
        extra: dict[str, float] = {}
        if self.rule in PAIRED_RULES and per_sample is not None:
            values = [float(v) for v in per_sample]
            if self.start is None:
                self.start = values
            if len(values) != len(self.start):
                raise PipelineError(
                    "paired validation needs the same validation samples at every validation"
                )
            sign = 1.0 if self.mode == "max" else -1.0
            diffs = [sign * (v - s) for v, s in zip(values, self.start)]
            units = (
                condition_means(diffs, metrics.get(GROUPS))
                if metrics.get(SAMPLED_CONDITIONS)
                else diffs
            )
            lcb = lower_bound(units, self.confidence)
            extra = {
                "paired_difference": sum(diffs) / len(diffs),
                "lcb": lcb,
                "bound_units": len(units),
            }
            if self.rule == "noninferior":
                upper = upper_bound(units, self.confidence)
                extra["ucb"] = upper
                better = upper >= 0
            else:
                better = self.best_lcb is None or lcb > self.best_lcb + self.min_delta
            if self.condition_guard and self.best_lcb is not None:
                worst = worst_condition_bound(diffs, metrics.get(GROUPS), self.confidence)
                extra["worst_condition_upper_bound"] = worst
                better = better and worst >= 0
            if better:
                self.best_lcb = lcb
        elif self.best_value is None:
            better = True
        elif self.mode == "max":
            better = value > self.best_value + self.min_delta
        else:
            better = value < self.best_value - self.min_delta
        if better:
            self.best_value, self.best_step, self.best_state, self.misses = value, step, state(), 0
        else:
            self.misses += 1
        return self.misses >= self.patience, extra


def call_validator(
    validate: Callable[..., dict[str, Any]], generator: Generator, size: int | None
) -> dict[str, Any]:
    """``validate(generator, size=size)`` when the validator takes a size (the pipeline's does),
    else ``validate(generator)``: a validator without it keeps its own sample count."""
    import inspect

    if size is not None:
        try:
            params = inspect.signature(validate).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if "size" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        ):
            return validate(generator, size=size)
    return validate(generator)


def _split_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar validation metrics (what is logged); per-sample lists only feed the selection."""
    return {k: float(v) for k, v in metrics.items() if k not in (PER_SAMPLE, GROUPS)}


def set_gradient_checkpointing(module: torch.nn.Module, enabled: bool) -> None:
    """Switch activation checkpointing on every diffusers model inside ``module`` (diffusers checks
    only ``torch.is_grad_enabled()``, so it works with the base in eval mode; transformers models
    checkpoint only in train mode and are left alone)."""
    found = False
    for sub in module.modules():
        if getattr(sub, "_supports_gradient_checkpointing", False) and hasattr(
            sub, "enable_gradient_checkpointing"
        ):
            sub.enable_gradient_checkpointing() if enabled else sub.disable_gradient_checkpointing()
            found = True
    if enabled and not found:
        raise ConfigError(
            "aligner option gradient_checkpointing=true, but the generator's network contains no diffusers model "
            "that supports it; set it to false"
        )


class Batches:
    """What an aligner prepares once per alignment: the encoded training data and how one
    mini-batch's loss is computed. ``step`` returns the loss and its diagnostics; ``meta`` (set by
    the aligner) describes the data for :attr:`AlignResult.meta`."""

    meta: dict[str, Any]

    def step(
        self, device: torch.device, autocast: Callable[[], AbstractContextManager[Any]]
    ) -> StepOutput:  # pragma: no cover
        raise NotImplementedError


class LoraAligner(Aligner):
    """Base of the LoRA aligners. Subclasses set ``kind``, ``adapter_name``, ``event`` and
    implement :meth:`prepare` (encode the training data, return its :class:`Batches`).

    If the network already carries this aligner's adapter (iterative refinement with
    ``continue_from_previous``), training continues from those weights; a reference, where a loss
    has one, is always the base network (adapters off)."""

    adapter_name = "saadi_lora"
    #: prefix of the history events: ``<event>_step`` and ``<event>_validate``
    event = "lora"

    def check_inputs(self, inputs: AlignInputs) -> None:
        """Refuse unusable inputs clearly, before the generator is touched."""

    def prepare(
        self,
        target: DiffusionTarget,
        generator: Generator,
        inputs: AlignInputs,
        rng: torch.Generator,
    ) -> Batches:
        """Encode the training data once and return how one mini-batch's loss is computed."""
        raise NotImplementedError

    def align(self, generator: Generator, inputs: AlignInputs, work_dir: Path) -> AlignResult:
        opts = self.options
        self.check_inputs(inputs)
        target = diffusion_target_of(generator, self.kind)
        module = target.trainable_module()
        seed = inputs.seed if opts.seed is None else opts.seed
        accelerator = self._accelerator(module)
        device = next(module.parameters()).device
        progress = self.context.progress

        rng = torch.Generator().manual_seed(seed * 7919 + accelerator.process_index)
        started = time.perf_counter()
        batches = self.prepare(
            target, generator, inputs, rng
        )  # before LoRA: bad inputs fail untouched
        encode_seconds = time.perf_counter() - started

        continued = has_lora(module, self.adapter_name)
        if continued:
            params = lora_parameters(module, self.adapter_name)
            for p in params:
                p.requires_grad_(True)
        else:
            config = lora_config(
                opts.target_modules or target.lora_target_modules(),
                opts.rank,
                opts.alpha,
                opts.dropout,
            )
            with torch.random.fork_rng(
                devices=[]
            ):  # same LoRA init on every process, global RNG untouched
                torch.manual_seed(seed)
                params = attach_lora(module, config, self.adapter_name)
        optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
        autocast = self._autocast(accelerator, device)
        history: list[dict[str, Any]] = []
        selection = Selection(
            opts.select_metric,
            opts.select_mode,
            opts.min_delta,
            opts.patience,
            opts.select_rule,
            opts.lcb_confidence,
            opts.condition_guard,
        )
        was_training = module.training

        def record(event: str, fields: dict[str, Any]) -> None:
            history.append({"event": event, **fields})
            progress.log(event, **fields)

        def validate(step: int) -> bool:
            assert inputs.validate is not None
            with adapters_merged(module):
                raw = call_validator(inputs.validate, generator, opts.validation_size)
            set_lora_train_mode(module)  # sampling may have switched modes
            stop, extra = selection.update(
                step, raw, lambda: lora_state_dict(module, self.adapter_name)
            )
            record(f"{self.event}_validate", {"step": step, **_split_metrics(raw), **extra})
            return stop

        def one_step() -> tuple[dict[str, float], float]:
            loss, metrics = batches.step(device, autocast)
            if not math.isfinite(float(loss.detach())):
                raise PipelineError(
                    f"{self.kind}: non-finite loss; lower lr or use bf16 instead of fp16 forwards"
                )
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if (
                accelerator.num_processes > 1
            ):  # each process drew its own batch: average the gradients
                for p in params:
                    if p.grad is not None:
                        p.grad = accelerator.reduce(p.grad, reduction="mean")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, opts.grad_clip))
            optimizer.step()
            return metrics, grad_norm

        set_lora_train_mode(module)
        if opts.gradient_checkpointing:
            set_gradient_checkpointing(module, True)
        stopped_early = False
        last_step = 0
        started = time.perf_counter()
        try:
            if inputs.validate is not None:
                validate(0)
            for step in progress.track(range(1, opts.steps + 1), self.kind, total=opts.steps):
                last_step = step
                metrics, grad_norm = one_step()
                record(f"{self.event}_step", {"step": step, **metrics, "grad_norm": grad_norm})
                due = step % opts.validate_every == 0 or step == opts.steps
                if inputs.validate is not None and due and validate(step):
                    stopped_early = step < opts.steps
                    break
        finally:
            if opts.gradient_checkpointing:
                set_gradient_checkpointing(module, False)
            module.train(was_training)
        train_seconds = time.perf_counter() - started

        lora = module.peft_config[self.adapter_name]
        meta: dict[str, Any] = {
            **batches.meta,
            "steps_run": last_step,
            "stopped_early": stopped_early,
            "continued_from_existing_adapter": continued,
            "lora": {
                "adapter_name": self.adapter_name,
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
            load_lora_state_dict(module, selection.best_state, self.adapter_name)
            start = "the starting adapters" if continued else "the base model"
            meta.update(
                select_metric=opts.select_metric,
                select_rule=opts.select_rule if selection.fallback is None else "point",
                best_step=selection.best_step,
                best_metric=selection.best_value,
                selected=f"step {selection.best_step}" if selection.best_step else start,
                aligned_equals_base=selection.best_step == 0 and not continued,
            )
            if selection.best_lcb is not None:
                meta["best_lcb"] = selection.best_lcb
            if selection.fallback:
                meta["select_note"] = selection.fallback
            if meta["aligned_equals_base"]:
                why = (
                    "with a lower confidence bound above 0" if meta["select_rule"] == "lcb" else ""
                )
                meta["note"] = (
                    f"no {self.kind} step improved validation {opts.select_metric} over the base model {why}".rstrip()
                    + "; the aligned generator equals the base"
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

    def _autocast(
        self, accelerator: Any, device: torch.device
    ) -> Callable[[], AbstractContextManager[Any]]:
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
        if not has_lora(module, self.adapter_name):
            raise PipelineError(
                f"nothing to save: the generator carries no '{self.adapter_name}' adapter"
            )
        save_lora(module, self.adapter_name, path / ADAPTER_DIR)
        (path / HISTORY_FILE).write_text(
            json.dumps({"history": result.history, "meta": result.meta}, indent=1)
        )

    def restore(self, generator: Generator, path: Path) -> Generator:
        """Attach the saved adapter to a freshly loaded base ``generator``'s network and merge it
        into the weights: the restored generator only samples, and merged it samples as fast as
        the base (same samples up to float rounding)."""
        module = diffusion_target_of(generator, self.kind).trainable_module()
        load_lora(module, Path(path) / ADAPTER_DIR, self.adapter_name)
        merge_lora(module)
        return generator
