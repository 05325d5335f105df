"""Fidelity metrics (FID/KID, MS-SSIM, PSNR, per-region, memorisation) as a first-party saadi plugin."""
