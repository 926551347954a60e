"""Loaders for weights saved by other code bases."""
from rear.compat.official import load_official_generator

__all__ = ["load_official_generator"]
