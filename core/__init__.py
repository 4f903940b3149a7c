"""Atelier's base: errors, settings, atomic files and name rules that every package may import."""
