"""The stages of the SAADi loop, one module each (or a small group).

Every stage module declares its ``NAME`` (from :mod:`saadi_core.stages.names`), ``INPUTS`` (the
upstream stages whose results it reads — their keys are part of its cache key), ``OUTPUTS`` (the
files it writes into its directory), ``SLOTS`` (the config slots whose plugin code computes it)
and a ``params(session, …)`` function: the parameters that, with the inputs' keys and the code
versions of those plugins (:mod:`saadi_core.stages.keys`), make its cache key. ``run(session, …)``
finds the cached result or computes it, through :meth:`RunSession.stage`.

The graph::

    data ─┬─ train-generator ── generate-pool ─┐
          └─ train-selector ───────────────────┴─ score ── pair ── align ─┐
    train-generator ── sample-base ─────────────────────── sample-aligned ─┴─ evaluate
    sample-* ── fidelity-* ── fidelity-compare;   data + sample-* ── downstream-*
"""
