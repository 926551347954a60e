"""Loaders for weights saved by other code bases."""
from rear.compat.alitok import load_alitok
from rear.compat.alitok_ar import load_alitok_generator
from rear.compat.official import load_official_generator
from rear.compat.titok import load_titok
from rear.tokenizer.maskgit import load_maskgit_vqgan

__all__ = ["load_alitok", "load_alitok_generator", "load_maskgit_vqgan", "load_official_generator", "load_titok"]
