"""The conformance checks pass for correct implementations and catch broken ones.

Each check is run against a small, correct toy implementation (so a check that rejects valid code
fails here) and against variants that break exactly one contract (so a check that lets the
breakage through fails here). The toys are cheap on purpose — colour statistics instead of
networks — because what is tested is the check, not the model. Also covers the pytest plugin's
fixtures and its import-lightness.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, ConfigDict

from saadi_core.conformance import check_aligner, check_generator, check_pairing, check_selector
from saadi_core.data.dataset import Dataset
from saadi_core.interfaces import (
    Aligner,
    AlignInputs,
    AlignResult,
    Condition,
    Generator,
    Pair,
    PairingStrategy,
    PairSet,
    RunContext,
    Sample,
    Selector,
)


class NoOpts(BaseModel):
    model_config = ConfigDict(extra="forbid")


def class_colours(dataset: Dataset) -> torch.Tensor:
    """Mean colour per class, ``(K, 3)`` in [-1, 1] (per image label or per mask pixel)."""
    pixels = dataset.train.image_tensor().permute(0, 2, 3, 1)  # (N, H, W, 3)
    if dataset.task == "classification":
        labels = torch.from_numpy(dataset.train.labels)[:, None, None].expand(pixels.shape[:3])
    else:
        labels = torch.from_numpy(dataset.train.masks)
    colours = torch.zeros(dataset.num_classes, 3)
    for c in range(dataset.num_classes):
        if (labels == c).any():
            colours[c] = pixels[labels == c].mean(0)
    return colours


# --------------------------------------------------------------------------- selectors


class ColourSelector(Selector):
    """Nearest class colour per pixel: image-level mean for classification, per-pixel map for
    segmentation; classification score = softmax probability of the intended class,
    segmentation score = mean Dice over the classes in the sample's mask."""

    def fit(self, dataset: Dataset, extra: Sequence[Sample] = ()) -> None:
        self.task = dataset.task
        self.colours = class_colours(dataset)

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        return -10 * ((images[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(
            2
        )  # (N, K, H, W)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        logits = self._logits(images)
        return logits.mean((2, 3)).argmax(1) if self.task == "classification" else logits.argmax(1)

    def score(self, samples: Sequence[Sample]) -> list[float]:
        return self._score(torch.stack([s.image for s in samples]), samples) if samples else []

    def _score(self, images: torch.Tensor, samples: Sequence[Sample]) -> list[float]:
        if self.task == "classification":
            probs = self._logits(images).mean((2, 3)).softmax(1)
            return [float(probs[i, s.condition.class_id]) for i, s in enumerate(samples)]
        pred = self.predict(images)
        scores = []
        for p, s in zip(pred, samples):
            dice = [
                2 * ((p == c) & (s.mask == c)).sum() / ((p == c).sum() + (s.mask == c).sum())
                for c in s.mask.unique()
            ]
            scores.append(float(torch.stack(dice).mean()))
        return scores

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "colours.json").write_text(
            json.dumps({"task": self.task, "colours": self.colours.tolist()})
        )

    def load(self, path: Path) -> None:
        data = json.loads((path / "colours.json").read_text())
        self.task, self.colours = data["task"], torch.tensor(data["colours"])


class OverconfidentSelector(ColourSelector):
    def score(self, samples):
        return [100 * s for s in super().score(samples)]  # percentages


class ShortSelector(ColourSelector):
    def score(self, samples):
        return super().score(samples)[:-1]


class ConditionBlindSelector(ColourSelector):
    def _score(self, images, samples):  # the top class's probability, whatever was intended
        return self._logits(images).mean((2, 3)).softmax(1).max(1).values.tolist()


class StochasticSelector(ColourSelector):
    def score(self, samples):
        return [min(1.0, s + 0.01 * random.random()) for s in super().score(samples)]


class FloatPredictSelector(ColourSelector):
    def predict(self, images):
        return super().predict(images).float()


class ForgetfulSelector(ColourSelector):
    def load(self, path):
        super().load(path)
        self.colours = torch.zeros_like(self.colours)


class EmptyCrashSelector(ColourSelector):
    def score(self, samples):
        return self._score(torch.stack([s.image for s in samples]), samples)  # stack fails on []


def make(cls: type) -> object:
    return cls(NoOpts(), RunContext())


def test_check_selector_passes_correct_classifier(
    saadi_tiny_dataset: Dataset, tmp_path: Path
) -> None:
    check_selector(make(ColourSelector), saadi_tiny_dataset, work_dir=tmp_path)
    assert (tmp_path / "selector" / "colours.json").is_file()


def test_check_selector_passes_correct_segmenter(saadi_tiny_seg_dataset: Dataset) -> None:
    check_selector(make(ColourSelector), saadi_tiny_seg_dataset)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (OverconfidentSelector, r"score \d+ = [\d.]+ is outside \[0, 1\]"),
        (ShortSelector, r"score\(\) returned 15 scores for 16 samples"),
        (
            ConditionBlindSelector,
            "scores do not change when the same images are asked to show another condition",
        ),
        (StochasticSelector, "different scores for the same samples"),
        (
            FloatPredictSelector,
            "predict\\(\\) must return integer class ids, got dtype torch.float32",
        ),
        (ForgetfulSelector, "differ after save\\(\\) and load\\(\\)"),
        (EmptyCrashSelector, r"score\(\[\]\) must return \[\], raised RuntimeError"),
    ],
)
def test_check_selector_catches(broken: type, message: str, saadi_tiny_dataset: Dataset) -> None:
    with pytest.raises(AssertionError, match=message):
        check_selector(make(broken), saadi_tiny_dataset)


# --------------------------------------------------------------------------- pairing


class WithinCondition(PairingStrategy):
    """Every winner (≥ 0.5) x loser (< 0.5) pair inside a condition, at most 8, drawn by seed."""

    max_pairs = 8

    def pairs(self, samples, scores, seed):
        h = self._threshold(scores)
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            groups.setdefault(s.condition.id, []).append(i)
        candidates = [
            Pair(samples[w], samples[l], scores[w], scores[l])
            for members in groups.values()
            for w in members
            if scores[w] >= h
            for l in members
            if scores[l] < h
        ]
        chosen = self._choose(candidates, seed)
        stats = {
            "n_pairs": len(chosen),
            "n_conditions": len(groups),
            "conditions_without_winner": [
                c for c, m in groups.items() if all(scores[i] < h for i in m)
            ],
            "conditions_without_loser": [
                c for c, m in groups.items() if all(scores[i] >= h for i in m)
            ],
        }
        return PairSet(chosen, stats)

    def _threshold(self, scores):
        return 0.5

    def _choose(self, candidates, seed):
        if len(candidates) <= self.max_pairs:
            return candidates
        return random.Random(seed).sample(candidates, self.max_pairs)


class CrossConditionPairing(PairingStrategy):
    def pairs(self, samples, scores, seed):
        if not samples:
            return PairSet(
                [],
                {
                    "n_pairs": 0,
                    "n_conditions": 0,
                    "conditions_without_winner": [],
                    "conditions_without_loser": [],
                },
            )
        best = max(range(len(samples)), key=lambda i: (scores[i], i))
        worst = min(range(len(samples)), key=lambda i: (scores[i], i))
        pair = Pair(samples[best], samples[worst], scores[best], scores[worst])
        return PairSet(
            [pair],
            {
                "n_pairs": 1,
                "n_conditions": 1,
                "conditions_without_winner": [],
                "conditions_without_loser": [],
            },
        )


class InvertedPairing(WithinCondition):
    def pairs(self, samples, scores, seed):
        result = super().pairs(samples, scores, seed)
        result.pairs = [
            Pair(p.loser, p.winner, p.loser_score, p.winner_score) for p in result.pairs
        ]
        return result


class MissingStatsPairing(WithinCondition):
    def pairs(self, samples, scores, seed):
        result = super().pairs(samples, scores, seed)
        del result.stats["conditions_without_loser"]
        return result


class UnseededPairing(WithinCondition):
    def _choose(self, candidates, seed):
        return random.Random().sample(candidates, min(len(candidates), self.max_pairs))


class RoundedScoresPairing(WithinCondition):
    def pairs(self, samples, scores, seed):
        result = super().pairs(samples, scores, seed)
        result.pairs = [Pair(p.winner, p.loser, 1.0, 0.0) for p in result.pairs]
        return result


class EmptyCrashPairing(WithinCondition):
    def _threshold(self, scores):
        return sum(scores) / len(scores)  # the mean score: ZeroDivisionError on empty input


class SortingPairing(WithinCondition):
    def pairs(self, samples, scores, seed):
        scores.sort()  # mutates the caller's list
        return super().pairs(samples, scores, seed)


def test_check_pairing_passes_correct_strategy() -> None:
    check_pairing(make(WithinCondition))


def test_check_pairing_allows_documented_cross_condition() -> None:
    check_pairing(make(CrossConditionPairing), allow_cross_condition=True)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            CrossConditionPairing,
            "pairs condition 'class:.*' with 'class:.*'; Diffusion-DPO needs winner and loser under one condition",
        ),
        (InvertedPairing, r"winner score 0\.\d+ < loser score 0\.\d+"),
        (MissingStatsPairing, "PairSet.stats lacks conditions_without_loser"),
        (UnseededPairing, "not deterministic for seed 0"),
        (RoundedScoresPairing, r"reports scores \(1.0, 0.0\) that are not its samples' scores"),
        (EmptyCrashPairing, "must return an empty PairSet, raised ZeroDivisionError"),
        (SortingPairing, "modified the scores"),
    ],
)
def test_check_pairing_catches(broken: type, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_pairing(make(broken))


# --------------------------------------------------------------------------- generators


class ToyGenerator(Generator):
    """Class (or mask) colours plus seeded per-sample noise; ``adapter`` is what the toy aligner
    adds, so aligned and base generators differ."""

    def fit(self, dataset: Dataset) -> None:
        self.colours = class_colours(dataset)
        self.size = dataset.image_size
        self.adapter = torch.zeros(3)

    def conditions(self, dataset: Dataset) -> list[Condition]:
        if dataset.task == "classification":
            return [
                Condition(id=f"class:{n}", class_id=i, class_name=n)
                for i, n in enumerate(dataset.class_names)
            ]
        return [
            Condition(
                id=f"mask:{dataset.train.ids[i]}", mask=torch.from_numpy(dataset.train.masks[i])
            )
            for i in range(4)
        ]

    def _noise(self, seed: int, condition: Condition, index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{condition.id}/{index}".encode()))
        return torch.randn(3, self.size, self.size, generator=g)

    def _render(self, condition: Condition, noise: torch.Tensor) -> torch.Tensor:
        if condition.mask is not None:
            base = self.colours[condition.mask].permute(2, 0, 1)
        else:
            base = self.colours[condition.class_id][:, None, None]
        return torch.tanh(base + self.adapter[:, None, None] + 0.2 * noise)

    def sample(self, conditions, n_per_condition, seed):
        return [
            Sample(
                image=self._render(c, self._noise(seed, c, i)),
                condition=c,
                generator="toy",
                seed=seed,
                index=i,
                mask=c.mask,
            )
            for c in conditions
            for i in range(n_per_condition)
        ]

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        torch.save({"colours": self.colours, "size": self.size}, path / "toy.pt")

    def load(self, path: Path) -> None:
        state = torch.load(path / "toy.pt")
        self.colours, self.size, self.adapter = state["colours"], state["size"], torch.zeros(3)


class UnseededGenerator(ToyGenerator):
    def _noise(self, seed, condition, index):
        return torch.randn(3, self.size, self.size)


class BatchDependentGenerator(ToyGenerator):
    def sample(self, conditions, n_per_condition, seed):
        g = torch.Generator().manual_seed(seed)  # one stream for the whole call
        return [
            Sample(
                image=self._render(c, torch.randn(3, self.size, self.size, generator=g)),
                condition=c,
                generator="toy",
                seed=seed,
                index=i,
                mask=c.mask,
            )
            for c in conditions
            for i in range(n_per_condition)
        ]


class SeedBlindGenerator(ToyGenerator):
    def _noise(self, seed, condition, index):
        return super()._noise(0, condition, index)


class ByteRangeGenerator(ToyGenerator):
    def _render(self, condition, noise):
        return (super()._render(condition, noise) + 1) * 127.5


class MisplacedSeedGenerator(ToyGenerator):
    def sample(self, conditions, n_per_condition, seed):
        samples = super().sample(conditions, n_per_condition, seed)
        for s in samples:
            s.seed = 0
        return samples


class MasklessGenerator(ToyGenerator):
    def sample(self, conditions, n_per_condition, seed):
        samples = super().sample(conditions, n_per_condition, seed)
        for s in samples:
            s.mask = None
        return samples


class ForgetfulGenerator(ToyGenerator):
    def load(self, path):
        super().load(path)
        self.colours = self.colours.flip(0)


def test_check_generator_passes_correct_generator(
    saadi_tiny_dataset: Dataset, saadi_tiny_seg_dataset: Dataset
) -> None:
    check_generator(make(ToyGenerator), saadi_tiny_dataset)
    check_generator(make(ToyGenerator), saadi_tiny_seg_dataset)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (UnseededGenerator, "two calls with seed 0 must give identical samples"),
        (BatchDependentGenerator, "must not depend on n_per_condition"),
        (SeedBlindGenerator, "seeds 0 and 1 give identical samples"),
        (ByteRangeGenerator, r"image values must be finite and in \[-1, 1\]"),
        (MisplacedSeedGenerator, "records seed 0, but sample\\(\\) was called with seed 7"),
        (
            ForgetfulGenerator,
            "save\\(\\) then load\\(\\) into a fresh instance must reproduce the samples",
        ),
    ],
)
def test_check_generator_catches(broken: type, message: str, saadi_tiny_dataset: Dataset) -> None:
    with pytest.raises(AssertionError, match=message):
        check_generator(
            make(broken), saadi_tiny_dataset, seed=7 if broken is MisplacedSeedGenerator else 0
        )


def test_check_generator_catches_batch_composition_dependence(saadi_tiny_dataset: Dataset) -> None:
    class OtherConditionsMatter(ToyGenerator):
        def _noise(self, seed, condition, index):  # depends on how many conditions came in the call
            return super()._noise(seed + self._n_conditions, condition, index)

        def sample(self, conditions, n_per_condition, seed):
            self._n_conditions = len(conditions)
            return super().sample(conditions, n_per_condition, seed)

    with pytest.raises(AssertionError, match="must not depend on the other conditions in the call"):
        check_generator(make(OtherConditionsMatter), saadi_tiny_dataset)


def test_check_generator_requires_masks_on_segmentation(saadi_tiny_seg_dataset: Dataset) -> None:
    with pytest.raises(
        AssertionError, match="samples for a segmentation dataset must carry a mask"
    ):
        check_generator(make(MasklessGenerator), saadi_tiny_seg_dataset)


# --------------------------------------------------------------------------- aligners


class ToyAligner(Aligner):
    """Moves the generator's colour adapter towards winners and away from losers."""

    def align(self, generator, inputs: AlignInputs, work_dir: Path) -> AlignResult:
        winners = torch.stack([p.winner.image.mean((1, 2)) for p in inputs.pairs])
        losers = torch.stack([p.loser.image.mean((1, 2)) for p in inputs.pairs])
        generator.adapter = generator.adapter + 0.5 * (winners - losers).mean(0)
        return AlignResult(
            generator, history=[{"step": 0, "adapter_norm": float(generator.adapter.norm())}]
        )

    def save(self, result: AlignResult, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        torch.save(result.generator.adapter, path / "adapter.pt")

    def restore(self, generator, path: Path):
        generator.adapter = torch.load(path / "adapter.pt")
        return generator


class ForgetfulAligner(ToyAligner):
    def restore(self, generator, path):
        return generator


class BadHistoryAligner(ToyAligner):
    def align(self, generator, inputs, work_dir):
        result = super().align(generator, inputs, work_dir)
        result.history = {"loss": [0.69]}
        return result


def test_check_aligner_passes_correct_aligner(saadi_tiny_dataset: Dataset, tmp_path: Path) -> None:
    check_aligner(make(ToyAligner), make(ToyGenerator), saadi_tiny_dataset, work_dir=tmp_path)
    assert (
        torch.load(tmp_path / "aligned" / "adapter.pt").abs().sum() > 0
    )  # alignment did change something


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            ForgetfulAligner,
            "restore\\(\\) onto the saved base generator must reproduce the aligned generator's samples",
        ),
        (BadHistoryAligner, "history must be a list of dicts"),
    ],
)
def test_check_aligner_catches(broken: type, message: str, saadi_tiny_dataset: Dataset) -> None:
    with pytest.raises(AssertionError, match=message):
        check_aligner(make(broken), make(ToyGenerator), saadi_tiny_dataset)


# --------------------------------------------------------------------------- the pytest plugin


def test_pytest_plugin_is_import_light() -> None:
    """pytest imports saadi_core.testing in every session of an environment with saadi."""
    code = (
        "import json, sys, saadi_core.testing; "
        "print(json.dumps([m for m in ('torch', 'numpy', 'saadi_core.registry') if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_fixtures_give_tiny_inputs(
    saadi_tiny_dataset: Dataset,
    saadi_tiny_seg_dataset: Dataset,
    saadi_run_store,
    saadi_context: RunContext,
    saadi_registry,
    saadi_conformance,
) -> None:
    assert (
        saadi_tiny_dataset.name,
        len(saadi_tiny_dataset.train),
        len(saadi_tiny_dataset.test),
    ) == ("toy-cls", 40, 20)
    assert saadi_tiny_dataset.image_size == 32 and saadi_tiny_dataset.task == "classification"
    assert (
        saadi_tiny_seg_dataset.task == "segmentation"
        and saadi_tiny_seg_dataset.train.masks.shape == (16, 32, 32)
    )
    assert (
        saadi_run_store.root / "manifest.json"
    ).is_file() and saadi_run_store.root.name == "test-run"
    assert (saadi_context.device, saadi_context.profile) == (
        "cpu",
        "tiny",
    ) and saadi_context.work_dir.is_dir()
    assert "toy-cls" in saadi_registry.kinds("dataset")
    assert saadi_conformance.check_selector is check_selector
