"""rear: visual autoregressive image generation with reAR regularization."""
from rear.config import AlignConfig, GeneratorConfig, SampleConfig, generator_preset
from rear.generator import Generator, build_generator
from rear.tokenizer import VQTokenizer

__all__ = ["AlignConfig", "Generator", "GeneratorConfig", "SampleConfig", "VQTokenizer", "build_generator",
           "generator_preset"]
__version__ = "0.1.0"
