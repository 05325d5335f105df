"""What a segmentation run's pool offers alignment: oracle pass, pairs per mask, selector-oracle κ.

    python benchmarks/seg_pool.py runs/ssi-s0 [runs/casdm-s0 ...] [--threshold 0.9] [--grid out.png]
    python benchmarks/seg_pool.py runs/ssi-s0 --score-by look --pairing threshold:threshold=0.9

For each finished run (at least its ``score`` stage) on an embedded toy set with an oracle, prints
the pool's oracle pass rate, which classes' regions fail and what they look like instead (toy-seg
version 2), how many mask conditions hold both a selector winner (score ≥ h) and a loser — the
conditions that give within-condition pairs — and the same with the oracle as the judge, the
selector-oracle Cohen's κ, and how much samples of one mask differ (mean per-pixel standard
deviation across a condition's samples, in 0-255 units). ``--grid`` writes the first samples of
the first conditions of the first run.

Two questions about what alignment can learn from the pool are answered too. **Pair quality**: for
each pairing strategy in ``--pairing`` (``kind`` or ``kind:option=value,...``, built through the
registry as a run would), how many of its pairs the oracle agrees with (winner passes, loser
fails), contradicts (the reverse) or cannot tell apart (both the same). **Masks without a winner**:
each such mask's best and median selector score, its oracle pass rate and its classes, which shows
whether a fixed h or the pool size keeps the mask from giving pairs. **Ranking within a mask**:
how often an oracle-passing sample outscores an oracle-failing sample of the same condition (an
AUC; 0.5 is a judge that cannot rank the samples of a mask, and ranking them is all a pairing
strategy can use).

``--score-by`` judges the pool with another judge of the run's segformer selector (``dice``,
``look`` or ``dice-and-look``) instead of the run's own scores: the run is reopened with only the
selector's ``score_by`` changed, so its generator and pool are reused and that selector is trained
into the run's stage store (once: a second call finds it there).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from saadi_core.config import RunConfig, deep_merge, parse_assignment
from saadi_core.preferences import load_pool
from saadi_core.registry import Registry, get_registry
from saadi_core.samples_io import load_samples, to_uint8_nhwc
from saadi_core.session import RunSession
from saadi_core.stages import data, pool, score, train
from saadi_core.store import RunStore


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two boolean vectors beyond chance (0 when either is constant)."""
    observed = float(np.mean(a == b))
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    return 0.0 if chance >= 1.0 else (observed - chance) / (1.0 - chance)


def _dataset(run: Path):
    config = json.loads((run / "manifest.json").read_text())["config"]
    entry = Registry.discover().get("dataset", config["dataset"]["kind"])
    return entry.load()(
        entry.build_options(config["dataset"].get("options") or {}, config.get("profile", "tiny"))
    )


def rescored_pool(run: Path, score_by: str, scratch: Path) -> tuple[list, list]:
    """The run's pool and its scores by the segformer judge ``score_by``, computed by a scratch
    run that differs from ``run`` only there and shares its stage store."""
    config = json.loads((run / "manifest.json").read_text())["config"]
    if config.get("aligner") is None:
        raise SystemExit(f"{run}: the run did not align, so it has no pool")
    selector = config["selector"]
    options = {**(selector.get("options") or {}), "score_by": score_by}
    config |= {
        "selector": {**selector, "options": options},
        "runs_dir": str(scratch),
        "name": f"{run.name}-{score_by}",
    }
    session = RunSession(
        RunConfig(**config),
        get_registry(),
        quiet=True,
        doc=None,
        stages_dir=RunStore(run).stages_dir,
    )
    try:
        real = data.run(session)
        trained, judge = train.run_generator(session, real), train.run_selector(session, real)
        pooled = pool.run(session, trained, judge)
        return load_samples(pooled.path), session.scores(score.run(session, pooled, judge))
    finally:
        session.store.release()


def within_condition_auc(groups: dict[str, list[int]], scores: list, passed: np.ndarray) -> float:
    """P(an oracle-passing sample outscores an oracle-failing one of the same condition), ties
    counting half; NaN when no condition has both."""
    values = np.asarray(scores, dtype=float)
    wins = total = 0.0
    for members in groups.values():
        good = values[[i for i in members if passed[i]]]
        bad = values[[i for i in members if not passed[i]]]
        diff = good[:, None] - bad[None, :]
        wins += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
        total += diff.size
    return wins / total if total else float("nan")


def parse_strategy(text: str) -> tuple[str, dict]:
    """``threshold:threshold=0.9`` -> ("threshold", {"threshold": 0.9}); each option is read as
    ``--set`` reads an assignment (YAML values, dotted keys, the same errors)."""
    kind, _, rest = text.partition(":")
    options: dict = {}
    for item in filter(None, rest.split(",")):
        options = deep_merge(options, parse_assignment(item))
    return kind, options


def pair_quality(samples: list, scores: list, passed: np.ndarray, strategy: str) -> dict:
    """The oracle's verdict on one pairing strategy's pairs (uncapped: every pair it would form)."""
    kind, options = parse_strategy(strategy)
    pairs = (
        get_registry()
        .create("pairing", kind, {"max_pairs": None, **options})
        .pairs(samples, scores, seed=0)
    )
    index = {id(s): i for i, s in enumerate(samples)}
    winner = np.array([passed[index[id(p.winner)]] for p in pairs.pairs], dtype=bool)
    loser = np.array([passed[index[id(p.loser)]] for p in pairs.pairs], dtype=bool)
    right, wrong = int((winner & ~loser).sum()), int((~winner & loser).sum())
    return {
        "masks_with_pairs": len({p.winner.condition.id for p in pairs.pairs}),
        "pairs": len(pairs.pairs),
        "oracle_agrees": right,
        "oracle_contradicts": wrong,
        "oracle_ties": len(pairs.pairs) - right - wrong,
        "agreement_of_decided": round(right / max(1, right + wrong), 3),
    }


def masks_without_winner(
    groups: dict[str, list[int]],
    scores: list,
    threshold: float,
    passed: np.ndarray,
    masks: np.ndarray,
    names: list,
) -> list[dict]:
    """Every mask none of whose samples scores >= h: its scores, oracle pass and classes."""
    out = []
    for cid, members in groups.items():
        values = np.array([scores[i] for i in members], dtype=float)
        if (values >= threshold).any():
            continue
        present = sorted({names[c] for c in np.unique(masks[members[0]]) if c != 0})
        out.append(
            {
                "condition": cid,
                "samples": len(members),
                "best_score": round(float(values.max()), 3),
                "median_score": round(float(np.median(values)), 3),
                "oracle_pass": round(float(passed[members].mean()), 2),
                "classes": present,
            }
        )
    return out


def report(
    run: Path,
    threshold: float,
    grid: Path | None,
    strategies: Sequence[str] = (),
    pool_and_scores: tuple[list, list] | None = None,
) -> dict:
    """The figures of the module docstring for ``run``'s pool, scored by the run's selector or
    as ``pool_and_scores`` gives."""
    import torch

    dataset = _dataset(run)
    samples, scores = pool_and_scores or load_pool(run)
    selected = np.array([s is not None and s >= threshold for s in scores], dtype=bool)
    images = to_uint8_nhwc(torch.stack([s.image for s in samples]))
    masks = torch.stack([s.mask for s in samples]).numpy()
    if dataset.oracle is None:
        raise SystemExit(f"dataset '{dataset.name}' has no oracle")
    passed = np.asarray(dataset.oracle.check(images, masks=masks), dtype=bool)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.condition.id, []).append(i)
    selector_pairs = sum(bool(selected[g].any() and (~selected[g]).any()) for g in groups.values())
    oracle_pairs = sum(bool(passed[g].any() and (~passed[g]).any()) for g in groups.values())
    spread = float(
        np.mean([images[g].astype(np.float32).std(axis=0).mean() for g in groups.values()])
    )
    out = {
        "run": str(run),
        "samples": len(samples),
        "oracle_pass": float(passed.mean()),
        "selector_pass": float(selected.mean()),
        "kappa": cohen_kappa(selected, passed),
        "auc_within_condition": round(within_condition_auc(groups, scores, passed), 3),
        "conditions": len(groups),
        "conditions_with_selector_pairs": selector_pairs,
        "conditions_with_oracle_pairs": oracle_pairs,
        "oracle_pass_per_condition": [round(float(passed[g].mean()), 2) for g in groups.values()],
        "within_condition_pixel_std": round(spread, 1),
    }
    out["masks_without_winner"] = masks_without_winner(
        groups, scores, threshold, passed, masks, dataset.class_names
    )
    out["pair_quality"] = {s: pair_quality(samples, scores, passed, s) for s in strategies}
    verdicts = getattr(dataset.oracle, "region_verdicts", None)
    if verdicts is not None:
        judged, failed, looks = Counter(), Counter(), Counter()
        for image, mask in zip(images, masks):
            for v in verdicts(image, mask):
                name = dataset.class_names[v["class"]]
                judged[name] += 1
                if not v["pass"]:
                    failed[name] += 1
                    looks[
                        f"{name}->{'none' if v['looks_like'] == v['class'] else dataset.class_names[v['looks_like']]}"
                    ] += 1
        out["region_fail_share"] = {k: round(failed[k] / judged[k], 3) for k in judged}
        out["failures_look_like"] = dict(looks.most_common())
    if grid is not None:
        from PIL import Image

        rows = [np.concatenate(list(images[g[:10]]), axis=1) for g in list(groups.values())[:8]]
        picture = np.concatenate(rows, axis=0)
        Image.fromarray(picture).resize(
            (picture.shape[1] * 2, picture.shape[0] * 2), Image.Resampling.NEAREST
        ).save(grid)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.9,
        help="selector threshold h (segmentation default 0.9)",
    )
    parser.add_argument("--grid", type=Path, default=None)
    parser.add_argument(
        "--pairing",
        action="append",
        default=[],
        help="a pairing strategy whose pairs the oracle judges, e.g. 'threshold:threshold=0.9' or "
        "'best-worst:k=4' (repeatable)",
    )
    parser.add_argument(
        "--score-by",
        choices=("dice", "look", "dice-and-look"),
        default=None,
        help="judge the pool by this score of the run's segformer selector (trained into the run's "
        "stage store if needed) instead of the run's own scores",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for k, run in enumerate(args.runs):
            rescored = rescored_pool(run, args.score_by, Path(scratch)) if args.score_by else None
            figures = report(
                run, args.threshold, args.grid if k == 0 else None, args.pairing, rescored
            )
            print(json.dumps({"score_by": args.score_by, **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
