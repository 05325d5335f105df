"""``ensemble`` selector: every member must score a sample >= h for it to pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from saadi_core import hookimpl
from saadi_core.interfaces import Condition, Sample, Selector
from saadi_core.registry import get_registry


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offset: float = 0.0
    seed: int = 0


class _Fixed(Selector):
    """Scores sample ``i`` as ``i / 10 + offset``; records fits, saves its offset."""

    fits: list[tuple[float, int]] = []

    def fit(self, dataset, extra=()) -> None:
        _Fixed.fits.append((self.options.offset, self.options.seed))

    def predict(self, images):
        return self.options.offset

    def score(self, samples):
        return [min(1.0, s.index / 10 + self.options.offset) for s in samples]

    def save(self, path: Path) -> None:
        path.mkdir(parents=True)
        (path / "offset").write_text(str(self.options.offset))

    def load(self, path: Path) -> None:
        self.options = self.options.model_copy(
            update={"offset": float((path / "offset").read_text())}
        )


class _Plugin:
    @hookimpl
    def saadi_register_selectors(self, register):
        register("fixed-test", _Fixed, options=_Opts)


@pytest.fixture(scope="module", autouse=True)
def fixed_selector():
    registry = get_registry()
    if "fixed-test" not in registry.kinds("selector"):
        registry.add_plugin(_Plugin(), name="test-fixed-selector")


def test_ensemble_scores_by_the_least_convinced_member_and_round_trips(tmp_path: Path) -> None:
    registry = get_registry()
    members = [
        {"kind": "fixed-test"},
        {"kind": "fixed-test", "options": {"offset": 0.3, "seed": 9}},
    ]
    ensemble = registry.create("selector", "ensemble", {"members": members, "seed": 4})
    _Fixed.fits.clear()
    ensemble.fit(None)
    assert _Fixed.fits == [
        (0.0, 4),
        (0.3, 9),
    ]  # the run seed reaches members that leave theirs unset
    samples = [
        Sample(image=None, condition=Condition(id="c"), generator="g", seed=0, index=i)
        for i in range(4)
    ]
    assert ensemble.score(samples) == pytest.approx(
        [0.0, 0.1, 0.2, 0.3]
    )  # min: member 0 decides here
    mean = registry.create("selector", "ensemble", {"members": members, "combine": "mean"})
    assert mean.score(samples) == pytest.approx([0.15, 0.25, 0.35, 0.45])
    ensemble.save(tmp_path / "e")
    fresh = registry.create(
        "selector", "ensemble", {"members": [{"kind": "fixed-test"}, {"kind": "fixed-test"}]}
    )
    fresh.load(tmp_path / "e")
    assert [m.options.offset for m in fresh.members] == [0.0, 0.3]


def test_an_ensemble_needs_two_members() -> None:
    from saadi_core.registry import OptionsError

    with pytest.raises(OptionsError):
        get_registry().create("selector", "ensemble", {"members": [{"kind": "fixed-test"}]})
