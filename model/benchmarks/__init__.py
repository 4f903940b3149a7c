"""Benchmarks behind `atelier bench`: rendering, training and the GPU check."""
