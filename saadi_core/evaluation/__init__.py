"""Evaluation: downstream metrics, paired significance tests, (later) fidelity metrics and report."""
