"""`python -m saadi_core` = `saadi` (used by `accelerate launch -m saadi_core run …`)."""

from saadi_core.cli import main

main()
