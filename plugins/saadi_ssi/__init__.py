"""saadi first-party plugin: ``ssi``, Surgical Stable Inpaint (SAADi Stage 1 for segmentation).

``plugin`` registers it (import-light), ``options`` holds its settings and profiles, ``inpaint``
the tensor operations of masked inpainting (paper Eq. 2 blend, region masks, the masked loss),
``conditions`` how training masks become conditions, ``components`` the model parts and save
layout, ``training`` the base-training loop, ``generator`` the implementation.
"""
