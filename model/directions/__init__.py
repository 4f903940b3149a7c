"""Latent directions: discovery (SeFa, PCA), scoring, review strips, publishing rules and the direction-set file
formats."""
