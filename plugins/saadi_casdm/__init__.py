"""saadi first-party plugin: ``casdm``, a CASDM-style class-aware, mask-conditioned generator.

``plugin`` registers it (import-light), ``options`` holds its settings and profiles, ``spade``
the spatially-adaptive normalisation, ``network`` the SPADE UNet, ``losses`` the class-aware
losses (paper Eq. 6–8), ``model`` the image model and its saved layout, ``training`` its training
loop, ``layout`` the text-prompted segmentation-map generator, ``generator`` the implementation
and its DiffusionTarget view.
"""
