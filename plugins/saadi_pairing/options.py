"""Options of the pairing strategies (pydantic only; the defaults are the ``tiny`` profile)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CapOptions(BaseModel):
    """How many pairs a strategy may return, and the minimum score gap of a pair."""

    model_config = ConfigDict(extra="forbid")

    max_pairs: int | None = Field(
        default=2000,
        ge=1,
        description="cap on the number of pairs (None = all); the budget is shared evenly by conditions",
    )
    max_pairs_per_condition: int | None = Field(
        default=None, ge=1, description="cap per condition (None = no cap)"
    )
    min_gap: float = Field(
        default=0.0,
        ge=0,
        description="keep only pairs whose winner score exceeds the loser's by at least this",
    )
    group_by: Literal["condition", "mask-classes"] = Field(
        default="condition",
        description="'mask-classes': pair only samples of one condition whose masks hold the same set of classes — for "
        "generators that draw their own mask (simgen), where a Dice score otherwise prefers scenes without hard classes",
    )


class ThresholdOptions(CapOptions):
    """Paper Eq. 3: preferred if s ≥ ``threshold``, non-preferred if s < ``threshold``."""

    threshold: float = Field(
        default=0.5, ge=0, le=1, description="h: winners score ≥ h, losers < h"
    )
    scope: Literal["condition", "global"] = Field(
        default="condition",
        description="'condition': winner and loser share a condition (what Diffusion-DPO needs); "
        "'global': the paper's cross product of all winners and losers",
    )

    @model_validator(mode="after")
    def _per_condition_needs_condition_scope(self) -> ThresholdOptions:
        if self.scope == "global" and self.max_pairs_per_condition is not None:
            raise ValueError(
                "max_pairs_per_condition applies to scope 'condition' only; use max_pairs with scope 'global'"
            )
        return self


class BestWorstOptions(CapOptions):
    """Per condition: the ``k`` best samples against the ``k`` worst."""

    k: int = Field(
        default=8,
        ge=1,
        description="top-k and bottom-k per condition (at most half the condition's samples each)",
    )
    winner_at_least: float | None = Field(
        default=None, ge=0, le=1, description="a winner must score ≥ this (None = any score)"
    )
    loser_below: float | None = Field(
        default=None, ge=0, le=1, description="a loser must score < this (None = any score)"
    )


class PreferenceOptions(BaseModel):
    """Pairs from a file of your own preferences (``saadi pool export``, then rate)."""

    model_config = ConfigDict(extra="forbid")

    file: Path = Field(
        description="CSV with columns 'winner' and 'loser' naming files written by 'saadi pool export' (one pair per row, "
        "both of one condition)"
    )
    digest: str | None = Field(
        default=None,
        description="set from the file's content when the options are read (leave unset): an edited file re-runs pairing "
        "and alignment instead of reusing the cached pairs",
    )

    @model_validator(mode="after")
    def _fingerprint(self) -> PreferenceOptions:
        path = self.file.expanduser()
        if path.is_dir():
            raise ValueError(f"preferences file '{path}' is a folder; give the CSV file")
        if not path.is_file():
            raise ValueError(f"preferences file '{path}' not found")
        self.digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return self
