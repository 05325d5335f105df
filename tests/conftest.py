"""Test-session settings shared by every test module."""

import os

import pytest

# Busy-waiting OpenMP threads stall badly when the (2-core) machine is shared; passive waiting
# keeps torch CPU training near its idle speed. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist every worker is a process of its own: one torch thread each, so N workers use
# N cores instead of oversubscribing them (inherited by the runs the tests start in subprocesses).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _private_dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the dataset cache (saadi_core.data.cache) of test runs, and of the runs they start in
    subprocesses, out of the user's ~/.cache."""
    os.environ.setdefault("SAADI_DATA_CACHE", str(tmp_path_factory.mktemp("data-cache")))
