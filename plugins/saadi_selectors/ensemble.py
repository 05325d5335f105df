"""``ensemble``: several selector architectures that must agree before a sample counts as good.

A generator aligned to one selector learns that selector's blind spots as well as the task (the
SimGen and SimuScope measurements in ``docs/benchmarks.md``). With ``combine: min`` (default) a
sample's score is the LOWEST member score, so it passes h — becomes a winner, is kept by a filter
— only when every architecture scores it ≥ h, and any member's rejection makes it a loser: a
failure one network cannot see must fool all of them to be rewarded. ``mean`` averages instead.

Members are built through the registry like any selector; ``predict`` and ``features`` are the
first member's (name a single model as ``downstream`` when the ensemble is the run's selector).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from saadi_core.config import ComponentSpec
from saadi_core.interfaces import Sample, Selector


class EnsembleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    members: list[ComponentSpec] = Field(
        default_factory=lambda: [
            ComponentSpec(kind="resnet18"),
            ComponentSpec(kind="convnext_small"),
        ],
        description="the selector kinds ({kind, options}) that must agree; at least two",
    )
    combine: Literal["min", "mean"] = Field(
        default="min", description="'min': every member must score >= h; 'mean': average"
    )
    seed: int | None = Field(
        default=None, description="seed handed to members that leave theirs unset; None = their own"
    )

    @field_validator("members")
    @classmethod
    def _two_or_more(cls, value: list[ComponentSpec]) -> list[ComponentSpec]:
        if len(value) < 2 or any(m.kind is None for m in value):
            raise ValueError("an ensemble needs at least two members, each with a kind")
        return value


class EnsembleSelector(Selector):
    """Scores by the members' minimum (or mean) score (options: :class:`EnsembleOptions`)."""

    kind = "ensemble"

    def __init__(self, options: EnsembleOptions, context: Any = None) -> None:
        super().__init__(options, context)
        from saadi_core.registry import get_registry

        registry = get_registry()
        self.members: list[Selector] = []
        for spec in options.members:
            entry = registry.get("selector", spec.kind)  # type: ignore[arg-type]
            opts = entry.build_options(spec.options, self.context.profile)
            if (
                options.seed is not None
                and "seed" in type(opts).model_fields
                and "seed" not in spec.options
            ):
                opts = opts.model_copy(update={"seed": options.seed})
            self.members.append(entry.create(opts, context=self.context))
        first = self.members[0]
        self.task = first.task  # type: ignore[misc]

    def fit(self, dataset: Any, extra: Sequence[Sample] = ()) -> None:
        for member in self.members:
            member.fit(dataset, extra=extra)

    def predict(self, images: Any) -> Any:
        return self.members[0].predict(images)

    def features(self, images: Any) -> Any:
        return self.members[0].features(images)

    def score(self, samples: Sequence[Sample]) -> list[float]:
        per_member = [member.score(samples) for member in self.members]
        if self.options.combine == "min":
            return [float(min(values)) for values in zip(*per_member)]
        return [float(sum(values) / len(values)) for values in zip(*per_member)]

    def save(self, path: Path) -> None:
        for i, member in enumerate(self.members):
            member.save(Path(path) / f"member-{i}")

    def load(self, path: Path) -> None:
        for i, member in enumerate(self.members):
            member.load(Path(path) / f"member-{i}")
