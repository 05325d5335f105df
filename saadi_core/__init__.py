"""saadi_core — interfaces, plugin discovery, config, run store and CLI of the SAADi toolkit.

The core holds no models: generators, selectors, pairing strategies and aligners are plugins
found through the ``saadi`` entry-point group. Importing this package must stay cheap (no torch),
because the CLI imports it before it knows whether any model is needed.
"""

__version__ = "0.1.0"

from saadi_core.hookspecs import hookimpl  # noqa: E402  (public: plugins decorate with it)

__all__ = ["__version__", "hookimpl"]
