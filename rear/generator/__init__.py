"""The generator: one interface (Generator), two backbones, the static KV cache and samplers."""
from rear.config import Backbone, GeneratorConfig
from rear.generator.base import Generator
from rear.generator.cache import KVCache
from rear.generator.llama import LlamaGenerator
from rear.generator.rar import RARGenerator

BACKBONES: dict[Backbone, type[Generator]] = {Backbone.RAR: RARGenerator, Backbone.LLAMA: LlamaGenerator}


def build_generator(config: GeneratorConfig) -> Generator:
    """The backbone `config.backbone` names, built from `config`."""
    return BACKBONES[config.backbone](config)


__all__ = ["BACKBONES", "Generator", "KVCache", "LlamaGenerator", "RARGenerator", "build_generator"]
