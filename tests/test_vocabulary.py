"""One vocabulary: generator options carry diffusers' names, and the names of earlier releases are
still accepted for one release with a FutureWarning (one mechanism, saadi_core.options)."""

from __future__ import annotations

import pytest

from saadi_core.registry import OptionsError, Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(only=["ssd", "ssi", "simgen", "casdm", "simuscope"])


@pytest.mark.parametrize(
    ("kind", "old", "new", "value"),
    [
        ("ssd", "unet_channels", "block_out_channels", [32, 64]),
        ("ssi", "unet_norm_groups", "norm_num_groups", 16),
        ("simuscope", "unet_head_dim", "attention_head_dim", 16),
        ("simgen", "unet_layers_per_block", "layers_per_block", 2),
        ("casdm", "channels", "block_out_channels", [32, 64]),
        ("casdm", "norm_groups", "norm_num_groups", 16),
    ],
)
def test_old_option_names_are_accepted_with_a_warning(registry, kind, old, new, value):
    entry = registry.get("generator", kind)
    with pytest.warns(FutureWarning, match=f"'{old}' is deprecated .* use '{new}'"):
        options = entry.build_options({old: value})
    assert getattr(options, new) == value and old not in type(options).model_fields


def test_every_generator_speaks_diffusers_names(registry):
    for kind in ("ssd", "ssi", "simgen", "casdm", "simuscope"):
        fields = registry.get("generator", kind).options_model.model_fields
        assert {"block_out_channels", "prediction_type"} <= set(fields), kind


def test_old_and_new_name_together_is_an_error(registry):
    with pytest.raises(OptionsError, match="give only 'block_out_channels'"):
        registry.get("generator", "ssd").build_options(
            {"unet_channels": [32, 64], "block_out_channels": [32, 64]}
        )
