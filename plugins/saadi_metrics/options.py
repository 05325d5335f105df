"""Options of the fidelity metrics (light: pydantic only, no torch).

Every default is the ``tiny`` profile (64-px toy data, a few hundred images per set); the
``paper`` profile overrides live next to the registrations in ``plugin.py``. Seeds are fixed so
the base and aligned variants of a run are measured on the same random subsets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: bootstrap resamples of the base-vs-aligned comparison (each costs two FID / KID evaluations)
COMPARE_RESAMPLES = Field(
    default=200,
    ge=10,
    description="bootstrap resamples (over conditions) of the aligned − base interval",
)


class FIDOptions(BaseModel):
    """``fid``: Fréchet distance between Gaussian fits of real and synthetic features."""

    model_config = ConfigDict(extra="forbid")

    compare_resamples: int = COMPARE_RESAMPLES


class KIDOptions(BaseModel):
    """``kid``: unbiased polynomial-kernel MMD² over random subsets (mean and std)."""

    model_config = ConfigDict(extra="forbid")

    subsets: int = Field(
        default=50, ge=1, description="number of random subsets KID is averaged over"
    )
    subset_size: int = Field(
        default=1000,
        ge=2,
        description="images per subset; capped at half the smaller set so small sets work and subsets differ",
    )
    degree: int = Field(
        default=3, ge=1, description="degree of the polynomial kernel (3 is the KID paper's)"
    )
    seed: int = Field(default=0, description="seed of the subset sampling (same for every variant)")
    compare_resamples: int = COMPARE_RESAMPLES


class MSSSIMOptions(BaseModel):
    """``ms-ssim``: MS-SSIM against paired references and between synthetic pairs (diversity)."""

    model_config = ConfigDict(extra="forbid")

    kernel_size: int = Field(
        default=7,
        ge=3,
        description="Gaussian window in px (odd); 7 instead of the usual 11 so 64-px images get 4 scales",
    )
    sigma: float = Field(
        default=1.0,
        gt=0,
        description="Gaussian window std in px (1.0 keeps ±3σ inside a 7-px window)",
    )
    max_scales: int = Field(
        default=5,
        ge=1,
        le=5,
        description="upper bound on the number of scales; fewer are used when the image is too small",
    )
    diversity_pairs: int = Field(
        default=100, ge=1, description="random synthetic pairs averaged for diversity_ms_ssim"
    )
    seed: int = Field(
        default=0, description="seed of the diversity pair sampling (same for every variant)"
    )

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {value}")
        return value


class PSNROptions(BaseModel):
    """``psnr``: peak signal-to-noise ratio against paired references."""

    model_config = ConfigDict(extra="forbid")


class RegionOptions(BaseModel):
    """``region-fid-kid``: FID/KID per class on bounding-box crops (SimGen's sFID/sKID)."""

    model_config = ConfigDict(extra="forbid")

    min_region_pixels: int = Field(
        default=16,
        ge=1,
        description="a class covering fewer pixels of an image gives no crop from that image",
    )
    min_crops: int = Field(
        default=8,
        ge=2,
        description="a class needs this many real and synthetic crops, else it is omitted",
    )
    crop_size: int | None = Field(
        default=None,
        ge=8,
        description="side the crops are resized to; None = the images' own size (selector features need the size "
        "the selector was trained on)",
    )
    max_crops: int | None = Field(
        default=256,
        ge=2,
        description="at most this many crops per class and set (a seeded random subset; the features of every crop "
        "cost a network forward); None = all",
    )
    kid_subsets: int = Field(default=20, ge=1, description="KID subsets per class")
    kid_subset_size: int = Field(
        default=1000, ge=2, description="KID subset size per class (capped by the crop counts)"
    )
    seed: int = Field(
        default=0, description="seed of the crop and KID subset sampling (same for every variant)"
    )

    @model_validator(mode="after")
    def _cap_above_minimum(self) -> RegionOptions:
        if self.max_crops is not None and self.max_crops < self.min_crops:
            raise ValueError(
                f"max_crops ({self.max_crops}) must be at least min_crops ({self.min_crops})"
            )
        return self


class MemorisationOptions(BaseModel):
    """``memorisation``: distance from each synthetic image to its nearest real training image."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["feature", "pixel"] = Field(
        default="feature",
        description="'feature': L2 distance between feature-extractor embeddings (catches near-copies that "
        "moved a little); 'pixel': root-mean-square pixel difference on the [-1, 1] scale (exact copies)",
    )
    top_k: int = Field(
        default=8, ge=1, description="closest synthetic/real pairs listed for the report"
    )
