"""The built-in study arm kinds: a generator alone (``base``), a generator with an aligner
(``aligned``), either one's samples filtered by the selector (``filter`` / ``aligned-filter``,
:mod:`saadi_core.filter_arm`) and a mix of other arms (named after the arm)."""

from __future__ import annotations

from typing import Any

from saadi_core.hookspecs import hookimpl


@hookimpl
def saadi_study_arm_label(arm: Any) -> str:
    if arm.mix is not None:
        return arm.name
    if arm.filter:
        return "aligned-filter" if arm.aligner is not None else "filter"
    return "aligned" if arm.aligner is not None else "base"
