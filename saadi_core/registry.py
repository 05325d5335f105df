"""Plugin discovery and the kind registry.

Discovery reads the ``saadi`` entry-point group with the ``entrypoints`` package (which imports
nothing) and loads each entry point inside its own ``try``: a broken plugin is recorded with its
error and reported by ``saadi plugins``, never crashing the CLI, unless ``SAADI_STRICT=1``.
``SAADI_LOAD_PLUGINS=a,b`` loads only the named entry points.

Each loaded plugin module is registered with one pluggy ``PluginManager``; the registry then calls
that plugin's ``saadi_register_*`` hooks with a ``register`` callable bound to the plugin and the
category, so every kind is tagged with the plugin (and distribution version) that provides it and
a duplicate kind names both plugins. Registrations are import paths, resolved only when a run
builds a component — listing plugins never imports torch.

The core's own embedded datasets are registered the same way, from the module
``saadi_core.data.builtin``, as a built-in plugin (like pytest's own built-in plugins); every
model-bearing first-party plugin comes through the entry-point group exactly as a third party's.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel, ConfigDict, ValidationError

from saadi_core import hookspecs
from saadi_core.errors import ConfigError, DuplicateKindError, PluginError, UnknownKindError

ENTRY_POINT_GROUP = "saadi"
BUILTIN_PLUGINS: tuple[str, ...] = ("saadi_core.data.builtin",)
_KIND_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class NoOptions(BaseModel):
    """Options model for kinds that take none."""

    model_config = ConfigDict(extra="forbid")


class OptionsError(ConfigError):
    """Component options failed validation; keeps pydantic's error list so the config layer can
    point at the offending YAML key and line."""

    def __init__(self, category: str, kind: str, errors: list[dict[str, Any]]) -> None:
        self.category, self.kind, self.errors = category, kind, errors
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "(options)"
        super().__init__(f"invalid options for {category} '{kind}': {where}: {first['msg']}")


def _import_ref(ref: str) -> Any:
    """Import ``"package.module:attr"`` (or a bare module path)."""
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


@dataclass
class KindEntry:
    """One registered kind: where its implementation and options live, and who provides it."""

    category: str
    kind: str
    target: str | Any
    options_ref: str | type[BaseModel]
    plugin: str
    version: str
    description: str = ""
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the dataset task the kind needs ("classification", "segmentation"); None = any or unknown
    task: str | None = None

    @cached_property
    def options_model(self) -> type[BaseModel]:
        """The kind's pydantic options model (imported on first use)."""
        model = (
            _import_ref(self.options_ref) if isinstance(self.options_ref, str) else self.options_ref
        )
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise PluginError(
                f"plugin '{self.plugin}': options of {self.category} '{self.kind}' is not a pydantic model"
            )
        if model.model_config.get("extra") != "forbid":
            raise PluginError(
                f"plugin '{self.plugin}': options model {model.__name__} of {self.category} '{self.kind}' "
                "must set extra='forbid' so typos in config are caught"
            )
        return model

    def build_options(self, raw: dict[str, Any] | None, profile: str = "tiny") -> BaseModel:
        """Validate ``raw`` options over the kind's defaults for ``profile``."""
        merged = {**self.profiles.get(profile, {}), **(raw or {})}
        try:
            return self.options_model.model_validate(merged)
        except ValidationError as exc:
            raise OptionsError(self.category, self.kind, exc.errors()) from None

    def load(self) -> Any:
        """Import and return the implementation (class or builder)."""
        if not isinstance(self.target, str):
            return self.target
        try:
            return _import_ref(self.target)
        except (
            Exception,
            SystemExit,
        ) as exc:  # a plugin's import failing is the user's environment problem
            raise PluginError(
                f"plugin '{self.plugin}' could not import {self.category} '{self.kind}' ({self.target}): {_describe(exc)}"
            ) from exc

    def create(
        self,
        options: dict[str, Any] | BaseModel | None = None,
        context: Any = None,
        profile: str = "tiny",
    ) -> Any:
        """Build a component instance (``cls(options, context)``)."""
        opts = options if isinstance(options, BaseModel) else self.build_options(options, profile)
        impl = self.load()
        instance = impl(opts, context)
        if hasattr(instance, "kind"):
            instance.kind = self.kind
        return instance


@dataclass
class PluginInfo:
    """What ``saadi plugins`` reports for one plugin."""

    name: str
    module: str
    version: str = ""
    distribution: str = ""
    status: str = "loaded"  # loaded | failed | skipped
    error: str = ""
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)
    kinds: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "version": self.version,
            "distribution": self.distribution,
            "status": self.status,
            "error": self.error,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "kinds": self.kinds,
        }


def _describe(exc: BaseException) -> str:
    """``Type: message`` of a plugin's failure; ``sys.exit()`` is named as such."""
    if isinstance(exc, SystemExit):
        return f"the plugin called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations of ``plugin`` that match no hook specification (typos)."""
    return sorted(
        caller.name
        for caller in pm.get_hookcallers(plugin) or []
        if caller.spec is None
        and not any(impl.optionalhook for impl in caller.get_hookimpls() if impl.plugin is plugin)
    )


def _installed_version(distribution: str) -> str:
    """Version of an installed distribution ('' if unknown); editable installs may not expose it
    through ``entrypoints``' metadata."""
    from importlib import metadata

    try:
        return metadata.version(distribution) if distribution else ""
    except metadata.PackageNotFoundError:
        return ""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class Registry:
    """All kinds known to this process, by category."""

    def __init__(self, strict: bool | None = None) -> None:
        self.strict = _env_flag("SAADI_STRICT") if strict is None else strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, KindEntry]] = {
            c: {} for c in hookspecs.CATEGORIES.values()
        }
        self._conflicts: dict[tuple[str, str], list[str]] = {}
        self.plugins: list[PluginInfo] = []
        from saadi_core.builtins import PLUGINS

        for name, module_name in PLUGINS:  # the core's own evaluation and executors, always present
            self.add_plugin(importlib.import_module(module_name), name=name, builtin=True)

    # ------------------------------------------------------------------ discovery

    @classmethod
    def discover(
        cls, strict: bool | None = None, only: list[str] | None = None, entry_points: bool = True
    ) -> Registry:
        """Registry with the built-in plugins and (unless ``entry_points=False``) every plugin of
        the ``saadi`` entry-point group, limited to ``only`` (default: ``SAADI_LOAD_PLUGINS``)."""
        registry = cls(strict=strict)
        for module_name in BUILTIN_PLUGINS:
            registry.add_plugin(
                importlib.import_module(module_name), name="saadi-core", builtin=True
            )
        if entry_points:
            registry.load_entry_points(only=only)
        return registry

    def load_entry_points(self, only: list[str] | None = None) -> None:
        import entrypoints

        if only is None:
            env = os.environ.get("SAADI_LOAD_PLUGINS", "").strip()
            only = [n.strip() for n in env.split(",") if n.strip()] if env else None
        seen: dict[str, tuple[str, str]] = {}
        for ep in sorted(entrypoints.get_group_all(ENTRY_POINT_GROUP), key=lambda e: e.name):
            distro = getattr(ep, "distro", None)
            dist_name = getattr(distro, "name", "") or ""
            origin = (ep.module_name, dist_name)
            if seen.get(ep.name) == origin:  # the same distribution visible twice on sys.path
                continue
            # another distribution using the same entry-point name is a plugin of its own (its
            # kinds then conflict visibly), not silently skipped
            name = ep.name if ep.name not in seen else f"{ep.name} ({dist_name or ep.module_name})"
            seen.setdefault(ep.name, origin)
            info = PluginInfo(
                name=name,
                module=ep.module_name + (f":{ep.object_name}" if ep.object_name else ""),
                version=getattr(distro, "version", "") or _installed_version(dist_name),
                distribution=dist_name,
            )
            if only is not None and ep.name not in only:
                info.status = "skipped"
                info.error = "not in SAADI_LOAD_PLUGINS"
                self.plugins.append(info)
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 (a plugin calling sys.exit() must not end saadi)
                self._fail(info, f"import failed: {_describe(exc)}", exc)
                continue
            self._add(plugin, info)

    def add_plugin(
        self, plugin: ModuleType | object, name: str, version: str = "", builtin: bool = False
    ) -> PluginInfo:
        """Register an already-imported plugin object (built-ins, tests, programmatic use)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name=name, module=module, version=version, builtin=builtin)
        if builtin and not version:
            from saadi_core import __version__

            info.version = __version__
        self._add(plugin, info)
        return info

    def _fail(self, info: PluginInfo, message: str, exc: BaseException | None = None) -> None:
        info.status = "failed"
        info.error = message
        self.plugins.append(info)
        if self.strict:
            raise PluginError(
                f"plugin '{info.name}' ({info.module}): {message} [SAADI_STRICT=1]"
            ) from exc

    def _add(self, plugin: object, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # noqa: BLE001 (pluggy rejects bad signatures of known hooks)
            self._fail(info, f"invalid hook implementation: {exc}", exc)
            return
        unknown = _unknown_hooks(self.pm, plugin)
        if unknown:  # pluggy accepts hooks without a spec; a misspelt hook would register nothing
            self.pm.unregister(name=info.name)
            known = ", ".join(sorted(hookspecs.CATEGORIES))
            self._fail(info, f"unknown hook(s) {', '.join(unknown)} (known: {known})")
            return
        staged: list[KindEntry] = []
        try:
            for hook_name, category in hookspecs.CATEGORIES.items():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin_name != info.name:
                        continue
                    info.hooks.append(hook_name)
                    impl.function(register=self._register_fn(info, category, staged))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 (any failure of a plugin is recorded)
            self.pm.unregister(name=info.name)
            self._fail(info, f"registration failed: {_describe(exc)}", exc)
            return
        for hook_name in hookspecs.LIFECYCLE_HOOKS:
            if any(
                impl.plugin_name == info.name
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls()
            ):
                info.hooks.append(hook_name)
        for entry in staged:  # commit only after the whole plugin registered cleanly
            self._commit(entry, info)
        self.plugins.append(info)

    def _register_fn(
        self, info: PluginInfo, category: str, staged: list[KindEntry]
    ) -> Callable[..., None]:
        def register(
            kind: str,
            target: str | Any,
            *,
            options: str | type[BaseModel] | None = None,
            description: str = "",
            profiles: dict[str, dict[str, Any]] | None = None,
            task: str | None = None,
        ) -> None:
            if not isinstance(kind, str) or not _KIND_RE.match(kind):
                raise PluginError(
                    f"{category} kind {kind!r} must be lower-case letters, digits, '-', '_' or '.'"
                )
            if isinstance(target, str) and ":" not in target:
                raise PluginError(
                    f"{category} '{kind}': target must be 'module:attribute', got {target!r}"
                )
            if (
                options is not None
                and not isinstance(options, str)
                and not (isinstance(options, type) and issubclass(options, BaseModel))
            ):
                raise PluginError(
                    f"{category} '{kind}': options must be a pydantic model or 'module:Model'"
                )
            staged.append(
                KindEntry(
                    category=category,
                    kind=kind,
                    target=target,
                    options_ref=options or NoOptions,
                    plugin=info.name,
                    version=info.version,
                    description=description,
                    profiles=dict(profiles or {}),
                    task=task,
                )
            )

        return register

    def _commit(self, entry: KindEntry, info: PluginInfo) -> None:
        existing = self._entries[entry.category].get(entry.kind)
        if existing is not None and existing.plugin != entry.plugin:
            owners = self._conflicts.setdefault((entry.category, entry.kind), [existing.plugin])
            owners.append(entry.plugin)
            message = (
                f"{entry.category} kind '{entry.kind}' is registered by both plugin "
                f"'{existing.plugin}' and plugin '{entry.plugin}'"
            )
            for owner in (info, *(p for p in self.plugins if p.name == existing.plugin)):
                owner.error = "; ".join(filter(None, [owner.error, message]))
            if self.strict:
                raise DuplicateKindError(message + " [SAADI_STRICT=1]")
            return
        self._entries[entry.category][entry.kind] = entry
        info.kinds.setdefault(entry.category, []).append(entry.kind)

    # ------------------------------------------------------------------ lookup

    def kinds(self, category: str) -> list[str]:
        """Sorted kinds of one category."""
        return sorted(self._entries[category])

    def entries(self, category: str) -> list[KindEntry]:
        return [self._entries[category][k] for k in self.kinds(category)]

    def get(self, category: str, kind: str) -> KindEntry:
        """The entry for ``kind``; a clear error listing the known kinds otherwise."""
        if category not in self._entries:
            raise PluginError(f"unknown component category '{category}'")
        owners = self._conflicts.get((category, kind))
        if owners:
            raise DuplicateKindError(
                f"{category} kind '{kind}' is registered by more than one plugin: "
                + ", ".join(f"'{o}'" for o in owners)
                + " (uninstall one, or limit loading with SAADI_LOAD_PLUGINS)"
            )
        try:
            return self._entries[category][kind]
        except KeyError:
            known = ", ".join(self.kinds(category)) or "(none installed)"
            hint = ""
            failed = [p.name for p in self.plugins if p.status == "failed"]
            if failed:
                hint = f"; plugins that failed to load: {', '.join(failed)} (see `saadi plugins`)"
            raise UnknownKindError(
                f"unknown {category} kind '{kind}'; known: {known}{hint}"
            ) from None

    def create(
        self,
        category: str,
        kind: str,
        options: dict[str, Any] | None = None,
        context: Any = None,
        profile: str = "tiny",
    ) -> Any:
        return self.get(category, kind).create(options, context=context, profile=profile)


_default: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, discovered on first use."""
    global _default
    if _default is None or refresh:
        _default = Registry.discover()
    return _default
