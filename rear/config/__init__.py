"""Every default in one place: typed configs for the generator, its reAR regularizers and every job.

Configs are plain dataclasses. YAML files and `key=value` overrides are merged onto them with
OmegaConf's structured mode, which rejects unknown keys and wrong types (schema.py). The generator
and its presets (generator.py), a training run (training.py), the other jobs (jobs.py).
"""
from rear.config.schema import (AT_LEAST_0, AT_LEAST_1, check_ranges, chosen_keys, flatten, FRACTION, merge,
                                POSITIVE, PROBABILITY, Range, to_dict)
from rear.config.generator import BACKBONE_ONLY, PRESETS, AlignConfig, Backbone, GeneratorConfig, generator_preset
from rear.config.training import CCAConfig, Corruption, NoiseConfig, OptimConfig, SampleConfig, TrainConfig
from rear.config.jobs import ClassifierConfig, ConvVQConfig, ServeConfig, StudyConfig, TokenizerTrainConfig

__all__ = ["AlignConfig", "AT_LEAST_0", "AT_LEAST_1", "Backbone", "BACKBONE_ONLY", "CCAConfig", "check_ranges",
           "chosen_keys", "ClassifierConfig", "ConvVQConfig", "Corruption", "flatten", "FRACTION",
           "generator_preset", "GeneratorConfig", "merge", "NoiseConfig", "OptimConfig", "POSITIVE",
           "PRESETS", "PROBABILITY", "Range", "SampleConfig", "ServeConfig", "StudyConfig", "to_dict",
           "TokenizerTrainConfig", "TrainConfig"]
