"""The built-in study arm kinds: a generator alone (``base``), a generator with an aligner
(``aligned``) and a mix of other arms (named after the arm)."""

from __future__ import annotations

from typing import Any

from saadi_core.hookspecs import hookimpl


@hookimpl
def saadi_study_arm_label(arm: Any) -> str:
    if arm.mix is not None:
        return arm.name
    return "aligned" if arm.aligner is not None else "base"
