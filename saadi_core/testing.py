"""pytest plugin for saadi plugin authors: fixtures to test an implementation in a few seconds.

Installed with saadi through the ``pytest11`` entry point, so these fixtures are available in any
test suite of an environment where saadi is installed — nothing to import or configure:

* ``saadi_registry`` — a fresh :class:`~saadi_core.registry.Registry` from ``Registry.discover()``
  (honours ``SAADI_LOAD_PLUGINS`` and ``SAADI_STRICT``);
* ``saadi_tiny_dataset`` / ``saadi_tiny_seg_dataset`` — the embedded ``toy-cls`` / ``toy-seg``
  datasets at 32 px with a few dozen images (:data:`TINY_CLS_OPTIONS`, :data:`TINY_SEG_OPTIONS`);
* ``saadi_run_store`` — a :class:`~saadi_core.store.RunStore` in a temporary directory;
* ``saadi_context`` — a :class:`~saadi_core.interfaces.RunContext` on CPU, ``tiny`` profile, with
  a temporary ``work_dir``;
* ``saadi_conformance`` — the :mod:`saadi_core.conformance` module (``check_selector``,
  ``check_pairing``, ``check_generator``, ``check_aligner``);
* ``saadi_pretrained_dirs`` — miniature Stable Diffusion, SD inpainting and ControlNet directories
  (random weights, real diffusers/transformers classes, :mod:`saadi_core.diffusion.miniature`) for
  the ``paper`` profile's ``pretrained``/``controlnet`` options, written once per session.

pytest imports this module in *every* session of such an environment, including test suites
that have nothing to do with saadi, so it imports nothing heavy at module level: each fixture
imports what it needs when it is used.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from saadi_core.data.dataset import Dataset
    from saadi_core.interfaces import RunContext
    from saadi_core.registry import Registry
    from saadi_core.store import RunStore

#: options of the ``toy-cls`` dataset behind ``saadi_tiny_dataset``
TINY_CLS_OPTIONS: dict[str, Any] = {"n_train": 40, "n_test": 20, "image_size": 32}
#: options of the ``toy-seg`` dataset behind ``saadi_tiny_seg_dataset``
TINY_SEG_OPTIONS: dict[str, Any] = {"n_train": 16, "n_test": 8, "image_size": 32}


def _builtin_dataset(kind: str, options: dict[str, Any]) -> Dataset:
    # Built-ins only: the toy datasets come from the core, so a broken third-party plugin in the
    # environment cannot break the fixtures that test another plugin.
    from saadi_core.registry import Registry

    return Registry.discover(entry_points=False).create("dataset", kind, dict(options))


@pytest.fixture
def saadi_registry() -> Registry:
    """A freshly discovered registry (built-ins + the ``saadi`` entry-point group)."""
    from saadi_core.registry import Registry

    return Registry.discover()


@pytest.fixture
def saadi_tiny_dataset() -> Dataset:
    """``toy-cls`` with 40 train / 20 test images at 32 px (five imbalanced classes)."""
    return _builtin_dataset("toy-cls", TINY_CLS_OPTIONS)


@pytest.fixture
def saadi_tiny_seg_dataset() -> Dataset:
    """``toy-seg`` with 16 train / 8 test images and masks at 32 px."""
    return _builtin_dataset("toy-seg", TINY_SEG_OPTIONS)


@pytest.fixture
def saadi_run_store(tmp_path: Path) -> RunStore:
    """A new run store ``<tmp>/runs/test-run`` with a minimal config."""
    from saadi_core.store import RunStore

    return RunStore.create(tmp_path / "runs", "test-run", {"profile": "tiny"})


@pytest.fixture
def saadi_context(tmp_path: Path) -> RunContext:
    """A CPU run context with the ``tiny`` profile and a scratch ``work_dir``."""
    from saadi_core.interfaces import RunContext

    work_dir = tmp_path / "work"
    work_dir.mkdir()
    return RunContext(device="cpu", profile="tiny", work_dir=work_dir)


@pytest.fixture
def saadi_conformance() -> ModuleType:
    """:mod:`saadi_core.conformance`, for ``saadi_conformance.check_selector(...)`` and friends."""
    from saadi_core import conformance

    return conformance


@pytest.fixture(scope="session")
def saadi_pretrained_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"sd": ..., "inpainting": ..., "controlnet": ...}``: miniature pretrained directories
    (32 px native size) written with ``save_pretrained`` — no download."""
    from saadi_core.diffusion.miniature import save_controlnet, save_stable_diffusion

    root = tmp_path_factory.mktemp("pretrained")
    sd = save_stable_diffusion(root / "sd")
    return {
        "sd": sd,
        "inpainting": save_stable_diffusion(root / "sd-inpainting", inpainting=True),
        "controlnet": save_controlnet(root / "controlnet", sd),
    }
