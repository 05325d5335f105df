"""The core's own plugins: its evaluation (lifecycle hooks) and its study executors.

Like pytest's built-in plugins, each module here implements hooks a third party could implement
too (:mod:`saadi_core.hookspecs`); the registry registers them in every
:class:`~saadi_core.registry.Registry` before any other plugin, so their entries come first and a
third-party plugin cannot take their keys or kinds."""

#: (plugin name, module) of every built-in plugin, in registration order
PLUGINS: tuple[tuple[str, str], ...] = (
    ("saadi-core.pass-rates", "saadi_core.builtins.pass_rates"),
    ("saadi-core.label-preservation", "saadi_core.builtins.label_preservation"),
    ("saadi-core.class-presence", "saadi_core.builtins.class_presence"),
    ("saadi-core.fidelity", "saadi_core.builtins.fidelity"),
    ("saadi-core.study-arms", "saadi_core.builtins.study_arms"),
    ("saadi-core.executors", "saadi_core.builtins.executors"),
)
