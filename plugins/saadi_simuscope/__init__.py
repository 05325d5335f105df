"""saadi first-party plugin: ``simuscope``, SimuScope-style simulator-to-real generation.

``plugin`` registers it (import-light), ``options`` holds its settings and profiles,
``simulator`` the toy simulator (flat-shaded renders of label masks), ``conditions`` where
simulator frames come from (a user's export or the toy simulator), ``control`` what the ControlNet
sees, ``network`` the UNet + ControlNet module, ``training`` the control and style stages,
``img2img`` the truncated sampling schedule, ``generator`` the implementation and its
DiffusionTarget. Label preservation (mIoU against the simulator label) is measured by the core's
evaluate stage for every generator whose samples carry masks. The model life cycle it shares with the
other latent diffusion generators is in :mod:`saadi_core.diffusion.latent` and its siblings.
"""
