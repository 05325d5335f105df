"""Diffusion pieces shared by every diffusion generator and aligner (torch is imported lazily by
the submodules, never by this package)."""
