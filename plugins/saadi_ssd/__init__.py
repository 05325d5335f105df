"""saadi first-party plugin: ``ssd``, the Surgical Stable Diffusion generator (SAADi Stage 1).

``plugin`` registers it (import-light), ``options`` holds its settings and profiles,
``generator`` the implementation, ``components`` the model parts and save layout,
``training`` the base-training loop.
"""
