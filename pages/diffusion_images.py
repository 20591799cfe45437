"""Diffusion Images: the paper's colored-MNIST composition of image diffusion models (y = (1, 2, 3) of MN1, MN2,
MN3 → green zeros; the M1/M2 pair), with base and composition grids side by side and the judge's fractions.

Thin page: everything is in :mod:`sculpt_core.app.diffusion_images`.
"""

from sculpt_core.app.diffusion_images import render
from sculpt_core.app.navigation import ensure_app_navigation

ensure_app_navigation()
render()
