"""saadi first-party plugin: selectors — timm classifiers and smp segmenters that score generated
samples (Stage 2) and serve as downstream models. ``plugin.py`` registers the kinds lazily;
``metrics.evaluate`` computes test-split F1 / Dice with the core's metric definitions."""
