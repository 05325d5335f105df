"""saadi first-party plugin: ``ssd``, the Surgical Stable Diffusion generator (SAADi Stage 1).

``plugin`` registers it (import-light), ``options`` holds its settings and profiles,
``generator`` the implementation, ``training`` the base-training loop. The model parts, their
save layout and the life cycle SSD shares with SSI are in :mod:`saadi_core.diffusion.latent`
and its sibling ``latent_*`` modules.
"""
