"""User-facing errors.

Every problem a user can fix (bad config, bad data, unknown plugin kind, …) raises a subclass of
:class:`SaadiError`. The CLI turns these into a one-line message and exit code 2; anything else
is a bug and keeps its traceback (shown with ``--debug``).
"""

from __future__ import annotations


class SaadiError(Exception):
    """A problem the user can fix; the message must say what and where (file, key, kind)."""

    exit_code = 2


class ConfigError(SaadiError):
    """Invalid run/study configuration or component options."""


class DataError(SaadiError):
    """Missing, corrupt or inconsistent input data (names the offending file)."""


class PluginError(SaadiError):
    """Plugin discovery or registration problem (broken plugin, duplicate or unknown kind)."""


class UnknownKindError(PluginError):
    """A config asked for a component kind no loaded plugin registers."""


class DuplicateKindError(PluginError):
    """Two plugins registered the same kind in one category."""


class PipelineError(SaadiError):
    """A stage cannot go on for a reason the user can act on (e.g. no preference pairs)."""
