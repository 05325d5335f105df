"""Options of the example kinds.

Light pydantic models only (no torch): saadi imports them to validate a config before anything
runs. Every default is the ``tiny`` profile (a CPU-sized setting); ``plugin.py`` lists the
``paper`` overrides. ``extra="forbid"`` is required by saadi so a misspelt option is an error.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TinyCNNOptions(BaseModel):
    """Options of the ``example-tinycnn`` selector."""

    model_config = ConfigDict(extra="forbid")

    channels: int = Field(
        default=16, ge=1, description="width of the first conv layer (doubled per layer)"
    )
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0, description="Adam learning rate")
    class_weighted: bool = Field(
        default=True, description="weigh the loss by inverse class frequency"
    )
    seed: int = Field(default=0, description="seeds weight init and batch order")


class Top1Options(BaseModel):
    """Options of the ``example-top1`` pairing strategy."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="winner needs score >= threshold, loser < threshold",
    )
