"""Tokenizers: one interface (VQTokenizer), the MaskGIT-VQGAN port, a small trainable conv VQ."""
from rear.tokenizer.base import VQTokenizer

__all__ = ["VQTokenizer"]
