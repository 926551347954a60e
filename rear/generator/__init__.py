"""The generator: model, static KV cache and samplers."""
from rear.generator.cache import KVCache
from rear.generator.model import Generator

__all__ = ["Generator", "KVCache"]
