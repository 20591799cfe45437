"""domains/diffusion: 2-D score-based diffusion models whose bases are Gaussian mixtures, so every noisy
marginal, every score and every composed target is available exactly."""
