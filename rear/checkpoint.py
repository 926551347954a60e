"""Generator checkpoints: a folder written atomically.

model.safetensors          the weights
config.json                the GeneratorConfig (the backbone included)
generation_config.json     how the model is meant to be sampled (a SampleConfig) and its class names,
                           when known: training and `rear convert` write it, `rear sample` and
                           `rear serve` read it
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, Sequence

import torch

from rear.config import GeneratorConfig, SampleConfig, merge, to_dict
from rear.generator import Generator, build_generator
from rear.hub import CardInfo, dataset_ids, front_matter, model_card, read_card_info, resolve, write_card
from rear.weights import CONFIG, WEIGHTS, load_state, read_tensors, replace_dir, write_weights

GENERATION = "generation_config.json"


@dataclasses.dataclass
class Generation:
    """What travels with a checkpoint besides its weights: sampling settings and class names."""

    sample: Optional[SampleConfig] = None  # None: the file sets no sampling settings (the defaults apply)
    class_names: Optional[list[str]] = None  # index -> name; None: the classes are known by index only


def write_generation(folder: Path, sample: SampleConfig, class_names: Optional[Sequence[str]]) -> None:
    """Write generation_config.json into `folder` (a checkpoint being built)."""
    generation = Generation(sample, list(class_names) if class_names is not None else None)
    (folder / GENERATION).write_text(json.dumps(to_dict(generation), indent=2))


def read_generation(directory: str | Path) -> Optional[Generation]:
    """The checkpoint's generation_config.json, or None where it has none (checkpoints before it existed)."""
    path = resolve(directory) / GENERATION
    if not path.is_file():
        return None
    try:
        return merge(Generation, str(path))
    except ValueError as error:  # a value out of range (merge names the key); say which file holds it
        raise ValueError(f"{path}: {error}; fix the file or pass the setting as a flag") from None


def save_generator(model: Generator, directory: str | Path, sample: Optional[SampleConfig] = None,
                   class_names: Optional[Sequence[str]] = None, training: Optional[dict] = None,
                   metrics: Optional[dict] = None) -> Path:
    """Save weights (safetensors), config (JSON), the generation config, and a model card (README.md and
    card.json, with `training` and `metrics` where known) to `directory`, replacing it atomically. What
    is not given is what the model was loaded with (`model.generation`, `model.card_info`), so a
    load/save round trip keeps the sampling settings, class names, training record and metrics."""
    loaded = model.generation
    if sample is None and loaded is not None:
        sample, class_names = loaded.sample, loaded.class_names if class_names is None else class_names
    info = CardInfo(training if training is not None else model.card_info.training,
                    metrics if metrics is not None else model.card_info.metrics)

    replace_dir(lambda folder: write_generator(folder, model, sample, class_names, info), Path(directory))
    return Path(directory)


def write_generator(folder: Path, model: Generator, sample: Optional[SampleConfig],
                    class_names: Optional[Sequence[str]], info: CardInfo) -> None:
    """A generator checkpoint's files into `folder` (being built): weights, config, the generation config
    where `sample` is given, and the model card. save_generator and the trainer's checkpoint both use it."""
    write_weights(model, folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps(to_dict(model.config), indent=2))
    if sample is not None:
        write_generation(folder, sample, class_names)
    write_card(folder, generator_card(model, sample, class_names, info.training, info.metrics), info)


def generator_card(model: Generator, sample: Optional[SampleConfig], class_names: Optional[Sequence[str]],
                   training: Optional[dict], metrics: Optional[dict]) -> str:
    """The README.md of a generator checkpoint: Hub header, what it is, five lines from labels to images."""
    c = model.config
    tokenizer = (training or {}).get("tokenizer", "the tokenizer it was trained on")
    summary = (f"A class-conditional autoregressive image generator ({c.backbone.value} backbone, "
               f"{model.num_parameters():,} parameters, width {c.width}, depth {c.depth}) over {c.num_tokens} "
               f"tokens of {c.codebook_size} codes, {c.num_classes} classes"
               + (f" ({', '.join(class_names[:10])}{', ...' if len(class_names) > 10 else ''})" if class_names else "")
               + f", made with rear (reAR regularization). Decode its tokens with {tokenizer}.")
    settings = sample if sample is not None else SampleConfig()
    labels = ", ".join(str(i) for i in range(min(3, c.num_classes)))
    snippet = "\n".join([
        "import torch", "from rear import Generator, VQTokenizer",
        'model = Generator.from_pretrained("PATH_OR_REPO_ID").eval()',
        'tokenizer = VQTokenizer.from_pretrained("TOKENIZER_PATH_OR_REPO_ID")  # the tokenizer named above',
        f"images = tokenizer.decode(model.generate(torch.tensor([{labels}]), cfg_scale={settings.cfg_scale:g}, "
        f"cfg_power={settings.cfg_power:g}))  # [B, C, H, W] in [0, 1], one image per label"])
    header = front_matter(["image-generation", "autoregressive", "class-conditional", "reAR", f"{c.backbone.value}-backbone"],
                          "unconditional-image-generation", dataset_ids((training or {}).get("data")))
    sampling = to_dict(sample) if sample is not None else None
    return model_card("rear generator", summary, snippet, c.own_fields(), header, training, metrics, sampling)


def load_generator(directory: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Rebuild a generator saved by `save_generator` (or a training checkpoint), from a local folder or
    a Hugging Face repo id."""
    directory = resolve(directory)
    for name in (WEIGHTS, CONFIG):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory / name} not found; a generator checkpoint is a folder with {WEIGHTS} and {CONFIG}"
            )
    config = merge(GeneratorConfig, str(directory / CONFIG))
    model = build_generator(config)
    load_state(model, read_tensors(directory / WEIGHTS), str(directory / WEIGHTS))
    model.generation, model.card_info = read_generation(directory), read_card_info(directory)
    return model.to(device)
