"""saadi first-party plugin: ``ssi``, Surgical Stable Inpaint (SAADi Stage 1 for segmentation).

``plugin`` registers it (import-light), ``options`` holds its settings and profiles, ``inpaint``
the tensor operations of masked inpainting (paper Eq. 2 blend, region masks, the masked loss),
``conditions`` how training masks become conditions, ``training`` the base-training loop,
``generator`` the implementation. The model parts, their save layout and the life cycle SSI
shares with SSD are in :mod:`saadi_core.diffusion.latent` and its sibling ``latent_*`` modules.
"""
