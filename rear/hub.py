"""Share models: `from_pretrained` names (a local folder or file, or a Hugging Face repo id) and model cards.

A local path is used as it is, offline. A name of the form `owner/repo` that is not a local path is
downloaded with `huggingface_hub` (the optional `hub` extra) into its cache. The folders are ours
(safetensors + JSON), so no mixin is needed and nothing here is imported unless a name is resolved.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CARD = "README.md"
CARD_INFO = "card.json"  # the card's training and metrics as data, so that a load/save round trip keeps them


@dataclass
class CardInfo:
    """What a saved model records of its making beside its weights: shown in its card, kept on re-save."""

    training: Optional[dict] = None
    metrics: Optional[dict] = None


def read_card_info(folder: str | Path) -> CardInfo:
    """The folder's card.json, or an empty record where it has none."""
    path = Path(folder) / CARD_INFO
    if not path.is_file():
        return CardInfo()
    data = json.loads(path.read_text())
    return CardInfo(data.get("training"), data.get("metrics"))


def resolve(name: str | Path) -> Path:
    """The local path `name`, or the folder a Hugging Face repo id `owner/repo` downloads to."""
    path = Path(name)
    if path.exists() or not REPO_ID.match(str(name)):
        return path  # the loader names a missing path in its own error
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"{name} is not a local path; to download it as a Hugging Face repo id, "
                                "install the hub extra (pip install 'rear-ar[hub]')") from None
    try:
        return Path(snapshot_download(str(name)))
    except Exception as error:  # offline, unknown repo, gated repo: one line, the cause named
        raise FileNotFoundError(f"{name} is neither a local path nor a repo that could be downloaded "
                                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None


# Hugging Face dataset ids of the sources rear reads by name (a store's `source`, e.g. fashion-mnist:train)
DATASETS = {"fashion-mnist": "zalando-datasets/fashion_mnist"}


def dataset_ids(source: Optional[str]) -> list[str]:
    """The Hub dataset ids a data source is known by (none for a user's own folder)."""
    if not source:
        return []
    return [DATASETS[source.split(":")[0]]] if source.split(":")[0] in DATASETS else []


def describe_tokenizer(kind: str, codebook_size: int, code_dim: int, grid: Any, channels: int, image_size: int,
                       fingerprint: str) -> str:
    """A tokenizer named by what it is, not where it lay: kind, codebook, grid, images, weights fingerprint."""
    return (f"{kind}: {codebook_size} codes of {code_dim} dims, {grid[0]} x {grid[1]} tokens, {channels}-channel "
            f"{image_size} px images, weights sha256 {fingerprint[:16]}")


def _table(rows: dict[str, Any]) -> list[str]:
    return ["| | |", "| --- | --- |", *(f"| {key} | {value} |" for key, value in rows.items())]


def front_matter(tags: list[str], pipeline_tag: str, datasets: list[str]) -> list[str]:
    """The Hub's YAML header of a model card."""
    lines = ["---", "library_name: rear", "license: mit", "tags:", *(f"- {tag}" for tag in tags),
             f"pipeline_tag: {pipeline_tag}"]
    if datasets:
        lines += ["datasets:", *(f"- {name}" for name in datasets)]
    return lines + ["---", ""]


def model_card(title: str, summary: str, snippet: str, config: dict, header: list[str], training: Optional[dict] = None,
               metrics: Optional[dict] = None, sampling: Optional[dict] = None) -> str:
    """A README.md for a saved model: the Hub header, what it is, a snippet that uses it, its sampling
    settings, training and metrics where they are known (and says so where they are not), its config."""
    lines = [*header, f"# {title}", "", summary, "", "```python", snippet, "```", ""]
    if sampling:
        lines += ["## Sampling settings (generation_config.json; `rear sample` uses them)", "", *_table(sampling), ""]
    lines += ["## Training", ""]
    lines += [*_table(training), ""] if training else ["Not recorded with these weights.", ""]
    lines += ["## Measured metrics", ""]
    lines += [*_table(metrics), ""] if metrics else ["None recorded with these weights.", ""]
    lines += ["## Config", "", "```json", json.dumps(config, indent=2), "```", ""]
    return "\n".join(lines)


def push_folder(folder: Path, repo_id: str, private: bool = False, message: str = "Upload with rear") -> str:
    """Upload a saved model folder to a Hugging Face model repo (created if missing); returns its URL.
    Needs the `hub` extra and a token (`huggingface-cli login` or $HF_TOKEN)."""
    if not REPO_ID.match(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hugging Face repo id (owner/name)")
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError("push_to_hub needs the hub extra: pip install 'rear-ar[hub]'") from None
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message=message)
    return f"https://huggingface.co/{repo_id}"


def write_card(folder: Path, card: str, info: CardInfo | None = None) -> None:
    """README.md, and card.json with `info`'s training and metrics when any is known."""
    (Path(folder) / CARD).write_text(card)
    if info is not None and (info.training or info.metrics):
        (Path(folder) / CARD_INFO).write_text(json.dumps({"training": info.training, "metrics": info.metrics}, indent=2))
