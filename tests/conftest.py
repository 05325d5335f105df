"""Test-session settings shared by every test module."""

import os

# Busy-waiting OpenMP threads stall badly when the (2-core) machine is shared; passive waiting
# keeps torch CPU training near its idle speed. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
