"""saadi first-party plugin: ``simgen``, joint image + mask diffusion (after SimGen, Bhat et al.).

``plugin`` registers it (import-light), ``options`` holds its settings and the paper profile,
``colour_coding`` the Canonical-Fibonacci-Lattice mask colours and their cosine decoding,
``network`` the joint image + mask space and the UNet2DModel, ``conditions`` the unconditional
and class-presence conditions, ``training`` the base-training loop, ``generator`` the
implementation and its DiffusionTarget view.
"""
