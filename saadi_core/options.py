"""The shared base of generator options: one vocabulary, the one diffusers uses.

Generator options that configure a diffusers network are named as diffusers names them
(``block_out_channels``, ``layers_per_block``, ``norm_num_groups``, ``attention_head_dim``,
``num_train_timesteps``, ``prediction_type``), so a user who knows diffusers reads a saadi config
without a glossary. Earlier releases used other names; :class:`GeneratorOptions` still accepts
them for one release, with a ``FutureWarning`` naming the new key (one mechanism for every
generator, instead of an alias per plugin)."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

#: deprecated option name -> its diffusers name (applies to every generator that has the new one)
RENAMED: dict[str, str] = {
    "unet_channels": "block_out_channels",
    "channels": "block_out_channels",
    "unet_layers_per_block": "layers_per_block",
    "unet_head_dim": "attention_head_dim",
    "unet_norm_groups": "norm_num_groups",
    "norm_groups": "norm_num_groups",
    "layout_channels": "layout_block_out_channels",
}


class GeneratorOptions(BaseModel):
    """Base of every generator's options: ``extra="forbid"`` and the deprecated names mapped."""

    model_config = ConfigDict(extra="forbid")
    renamed: ClassVar[dict[str, str]] = RENAMED

    @model_validator(mode="before")
    @classmethod
    def _accept_deprecated_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        for old, new in cls.renamed.items():
            if old in data and old not in fields and new in fields:
                if new in data:
                    raise ValueError(
                        f"'{old}' is the deprecated name of '{new}'; give only '{new}'"
                    )
                warnings.warn(
                    f"generator option '{old}' is deprecated and will be removed in the next release; use '{new}'",
                    FutureWarning,
                    stacklevel=2,
                )
                data = {k: v for k, v in data.items() if k != old} | {new: data[old]}
        return data
