"""The ``sequence`` aligner: each aligner starts from the previous one's kept state, folded into
the weights, so it is the next one's reference; save + restore rebuild the chain on a fresh base."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from saadi_align.dpo import ADAPTER_NAME as DPO_ADAPTER
from saadi_align.iterative import IterativeAligner
from saadi_align.options import IterativeOptions, SequenceOptions
from saadi_align.sequence import POOL_SEED_OFFSET, SequenceAligner
from test_dpo import TinyDiffusion, base_weights, make_dataset, one_thread  # noqa: F401 (fixture)
from test_iterative import make_inputs
from test_unpaired_aligners import pool_inputs

from saadi_core.conformance import check_aligner
from saadi_core.diffusion.lora import attach_lora, fold_lora, lora_config, merge_lora
from saadi_core.errors import PipelineError
from saadi_core.interfaces import AlignResult, PairSet
from saadi_core.registry import get_registry

CONTROL = {"kind": "train-longer", "options": {"steps": 4, "batch_size": 3, "lr": 1e-2, "seed": 0}}
DPO = {"kind": "diffusion-dpo", "options": {"steps": 3, "batch_size": 2, "lr": 3e-3, "beta": 500.0}}


def control_then_dpo() -> SequenceAligner:
    return SequenceAligner(SequenceOptions(aligners=[CONTROL, DPO]))


def outputs(gen: TinyDiffusion) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=g)
    with torch.no_grad():
        return gen.predict(
            x, torch.tensor([5, 10, 20, 40]), {"class_ids": torch.tensor([0, 1, 2, 0])}
        )


class _Block(torch.nn.Module):
    """Attention (peft unloads it its own way) and a linear layer inside a ModuleList."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = torch.nn.ModuleList([torch.nn.Linear(8, 8)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out[0](self.attn(x, x, x)[0])


@pytest.mark.parametrize("merged_first", [False, True], ids=["training", "restored"])
def test_fold_lora_leaves_a_plain_network_computing_the_adapted_function(merged_first) -> None:
    torch.manual_seed(0)
    net = _Block()
    attach_lora(net, lora_config(["attn", "out.0"]), "a")
    for name, p in net.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        adapted = net(x)
    if merged_first:  # what restore() leaves: merged, still wrapped
        merge_lora(net)
    fold_lora(net)
    assert not any(isinstance(m, BaseTunerLayer) for m in net.modules())
    assert not hasattr(net, "peft_config")
    assert type(net.attn) is torch.nn.MultiheadAttention and type(net.out[0]) is torch.nn.Linear
    with torch.no_grad():
        assert torch.allclose(net(x), adapted, atol=1e-5)
    attach_lora(net, lora_config(["out.0"]), "b")  # a plain network takes a new adapter


def test_the_second_aligner_starts_from_what_the_first_kept(tmp_path: Path) -> None:
    gen = TinyDiffusion()
    before = base_weights(gen.net)
    result = control_then_dpo().align(gen, pool_inputs(2), tmp_path / "work")

    # the caller's generator is untouched: the parts ran on a copy
    assert result.generator is not gen and not hasattr(gen.net, "peft_config")
    assert all(torch.equal(before[k], v) for k, v in base_weights(gen.net).items())
    # the control moved the weights, and they were folded in before DPO attached its adapter
    aligned = result.generator.net
    folded = base_weights(aligned)
    assert any(not torch.equal(before[k], folded[k]) for k in before)
    assert sorted(aligned.peft_config) == [DPO_ADAPTER]
    steps = [h for h in result.history if h.get("event") == "dpo_step"]
    assert [h["part"] for h in steps] == [2, 2, 2]
    # DPO's reference is the folded control (adapter off = the network as the control left it): ln 2
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert [p["kind"] for p in result.meta["parts"]] == ["train-longer", "diffusion-dpo"]
    assert result.meta["aligned_equals_base"] is False


def test_save_and_restore_rebuild_the_chain_on_a_fresh_base(tmp_path: Path) -> None:
    aligner = control_then_dpo()
    result = aligner.align(TinyDiffusion(), pool_inputs(2), tmp_path / "work")
    aligner.save(result, tmp_path / "saved")
    assert (tmp_path / "saved" / "part-1" / "adapter").is_dir()
    assert (tmp_path / "saved" / "part-2" / "adapter").is_dir()

    restored = control_then_dpo().restore(TinyDiffusion(), tmp_path / "saved")
    assert torch.allclose(outputs(restored), outputs(result.generator), atol=1e-5)
    # the control alone does not give these outputs: part 2 was restored on top of it
    control_only = SequenceAligner(SequenceOptions(aligners=[CONTROL])).restore(
        TinyDiffusion(), tmp_path / "saved"
    )
    assert not torch.allclose(outputs(control_only), outputs(result.generator), atol=1e-5)


def test_any_instance_saves_a_result_that_carries_its_handover(tmp_path: Path) -> None:
    """save() reads the earlier parts' folders from the result, not from the aligning instance:
    ``iterative`` saves its inner aligner's result with a new instance."""
    result = control_then_dpo().align(TinyDiffusion(), pool_inputs(1), tmp_path / "work")
    control_then_dpo().save(result, tmp_path / "saved")
    assert (tmp_path / "saved" / "part-1" / "adapter").is_dir()
    bare = AlignResult(result.generator, result.history, result.meta)
    with pytest.raises(PipelineError, match="only save a result of its own align"):
        control_then_dpo().save(bare, tmp_path / "again")


def test_a_sequence_inside_iterative_saves_and_restores(tmp_path: Path) -> None:
    inner = {"kind": "sequence", "options": {"aligners": [CONTROL, DPO]}}
    aligner = IterativeAligner(IterativeOptions(rounds=1, inner=inner))
    result = aligner.align(TinyDiffusion(), pool_inputs(1), tmp_path / "work")
    aligner.save(result, tmp_path / "saved")
    restored = IterativeAligner(IterativeOptions(rounds=1, inner=inner)).restore(
        TinyDiffusion(), tmp_path / "saved"
    )
    assert torch.allclose(outputs(restored), outputs(result.generator), atol=1e-5)


def test_sequence_passes_the_conformance_check(tmp_path: Path) -> None:
    check_aligner(
        control_then_dpo(),
        TinyDiffusion(seed=3),
        make_dataset(),
        fit_generator=False,
        work_dir=tmp_path,
    )


def test_an_on_policy_part_learns_from_a_pool_the_previous_part_draws(tmp_path: Path) -> None:
    """With ``pool: on-policy`` DPO's pairs come from the control's kept state, not the base's pool:
    the new pool is what the restored control draws with the part's seed, scored by the run's
    selector and paired by the run's strategy."""
    inputs = make_inputs(pool_per_class=2)
    aligner = SequenceAligner(SequenceOptions(aligners=[CONTROL, DPO], pool="on-policy"))
    result = aligner.align(TinyDiffusion(), inputs, tmp_path / "work")

    seed = inputs.seed + POOL_SEED_OFFSET + 2
    new_pool = inputs.selector.scored[-1]
    assert new_pool is not inputs.pool and len(new_pool) == len(inputs.pool)
    assert {s.seed for s in new_pool} == {seed}
    assert inputs.pairing.calls[-1][0] is new_pool
    part2 = result.meta["parts"][1]
    assert part2["pool"] == "on-policy" and part2["n_pool"] == len(new_pool)
    assert "pool" not in result.meta["parts"][0]  # the first part learns from the given pool

    control = get_registry().create("aligner", CONTROL["kind"], CONTROL["options"])
    control = control.restore(TinyDiffusion(), tmp_path / "work" / "part-1" / "kept")
    drawn = control.sample(control.conditions(inputs.dataset), 2, seed)
    assert all(torch.allclose(a.image, b.image, atol=1e-5) for a, b in zip(drawn, new_pool))
    base = TinyDiffusion().sample(control.conditions(inputs.dataset), 2, seed)
    assert not all(torch.allclose(a.image, b.image, atol=1e-5) for a, b in zip(base, new_pool))


def test_an_on_policy_sequence_without_a_selector_says_what_it_needs(tmp_path: Path) -> None:
    aligner = SequenceAligner(SequenceOptions(aligners=[CONTROL, DPO], pool="on-policy"))
    with pytest.raises(PipelineError, match="needs selector, pairing"):
        aligner.align(TinyDiffusion(), pool_inputs(1), tmp_path)


class _NoPairs:
    """A pairing that forms nothing: every sample of the new pool on one side of h."""

    def pairs(self, samples, scores, seed) -> PairSet:
        return PairSet(pairs=[], stats={"n_pairs": 0})


def test_an_on_policy_pool_without_pairs_still_teaches_a_label_learner(tmp_path: Path) -> None:
    """The drawn pool goes to the part as it is: KTO learns from per-sample labels and needs no
    pair, so the run must not stop for want of pairs."""
    inputs = make_inputs(pool_per_class=2)
    inputs.pairing = _NoPairs()
    kto = {"kind": "diffusion-kto", "options": {"steps": 2, "batch_size": 2, "seed": 0}}
    aligner = SequenceAligner(SequenceOptions(aligners=[CONTROL, kto], pool="on-policy"))
    result = aligner.align(TinyDiffusion(), inputs, tmp_path)
    assert result.meta["parts"][1]["pair_stats"] == {"n_pairs": 0}
    assert any(h.get("part") == 2 and "loss" in h for h in result.history)
