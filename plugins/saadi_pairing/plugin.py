"""Registration of the pairing strategies (lazy: the implementation is imported when used)."""

from __future__ import annotations

from collections.abc import Callable

from saadi_core import hookimpl


@hookimpl
def saadi_register_pairings(register: Callable[..., None]) -> None:
    register(
        "threshold",
        "saadi_pairing.strategies:ThresholdPairing",
        options="saadi_pairing.options:ThresholdOptions",
        description="paper Eq. 3: winners s ≥ h, losers s < h, within one condition (scope: global for the cross product)",
    )
    register(
        "best-worst",
        "saadi_pairing.strategies:BestWorstPairing",
        options="saadi_pairing.options:BestWorstOptions",
        description="per condition: the k best against the k worst samples",
    )
    register(
        "preferences",
        "saadi_pairing.strategies:PreferencePairing",
        options="saadi_pairing.options:PreferenceOptions",
        description="pairs from your own CSV of winner/loser files (saadi pool export, rate, import)",
    )
