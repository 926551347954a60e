"""Score samples against a reference: FID, sFID, IS, precision/recall, class accuracy -> JSON."""
from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rear.data.sources import open_source, parse_source, read_all
from rear.errors import first_line
from rear.evaluation.classifier import Classifier, load_classifier
from rear.images import to_uint8
from rear.metrics import frechet_distance, inception_score, kernel_inception_distance, precision_recall, statistics
from rear.tokenizer.base import VQTokenizer
from rear.weights import state_fingerprint

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, read whole (never unpickling); a truncated or foreign file is one ValueError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .npz ({first_line(error)}); it may be truncated: write it "
                         "again") from None


def load_images(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 [n, H, W, 3] and labels (if recorded) from an ADM `.npz` (`arr_0`) or a folder of images."""
    path = Path(path)
    if path.suffix == ".npz":
        data = read_npz(path)
        if "arr_0" not in data:
            raise ValueError(f"{path} has no arr_0; expected an ADM sample batch [n, H, W, 3] uint8")
        images = data["arr_0"]
        if images.size == 0:
            raise ValueError(f"{path} holds no images (arr_0 has shape {images.shape})")
        if images.ndim == 3:  # grayscale [n, H, W]: the layout every scorer reads is [n, H, W, 3]
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
            raise ValueError(f"{path}: arr_0 is {images.dtype} {tuple(data['arr_0'].shape)}; expected uint8 "
                             "[n, H, W, 3] (or grayscale [n, H, W] / [n, H, W, 1])")
        return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images, data.get("labels")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        for f, image in zip(files, images):
            if image.shape != images[0].shape:
                raise ValueError(f"{f} is {image.shape[1]}x{image.shape[0]} but {files[0]} is "
                                 f"{images[0].shape[1]}x{images[0].shape[0]}; images of one set must share a size")
        return np.stack(images), None
    raise FileNotFoundError(f"{path} is neither an .npz sample batch nor a folder of images")


def to_classifier_input(images: np.ndarray, classifier: Classifier) -> torch.Tensor:
    """uint8 [n, H, W, 3] -> float [n, C, S, S]; refuse images of another size than the classifier's."""
    c = classifier.config
    if images.ndim != 4 or images.shape[1:3] != (c.image_size, c.image_size):
        raise ValueError(f"images are {images.shape[1:3]} but the classifier takes {c.image_size}x{c.image_size}; "
                         "score samples against a reference of their own image size")
    x = torch.from_numpy(np.asarray(images)).float().div(255).permute(0, 3, 1, 2)
    return x.mean(1, keepdim=True) if c.channels == 1 else x


def check_domain(images: np.ndarray, labels: np.ndarray | None, classifier: Classifier) -> list[str]:
    """Refuse samples uint8 [n, H, W, 3] the classifier cannot judge (colour, classes; a size it does not
    take is refused by to_classifier_input); return warnings for what it can judge with care."""
    c = classifier.config
    colour = bool((images[..., :1] != images).any())
    if c.channels == 1 and colour:
        raise ValueError("samples are in colour but the classifier was trained on grayscale images; "
                         "train one on the samples' domain (rear eval train-classifier --source ...)")
    if labels is not None and int(labels.max()) + 1 != c.num_classes:
        raise ValueError(f"samples are labelled with {int(labels.max()) + 1} classes but the classifier knows "
                         f"{c.num_classes}; train one on the samples' domain (rear eval train-classifier --source ...)")
    if c.channels == 3 and not colour:
        return ["samples are grayscale but the classifier was trained on colour images"]
    return []


def to_inception_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, H, W, 3] -> float [n, 3, H, W] in [0, 1] (InceptionFeatures resizes to 299 itself)."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [n, H, W, 3], got {images.shape}")
    return torch.from_numpy(np.asarray(images)).float().div(255).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Extractor:
    """What turns uint8 images [n, H, W, 3] into features: the FID InceptionV3 or a domain classifier."""

    embed: Callable[[np.ndarray], dict[str, np.ndarray]]
    image_size: int | None  # the size it takes (None: any; the Inception resizes)
    classifier: Classifier | None  # with one, the samples' labels are its classes
    fingerprint: str  # sha256 of its weights: saved statistics record it, scoring checks it


def open_extractor(classifier: str | Path | None = None, inception: str | Path | None = None) -> Extractor:
    """The domain classifier in folder `classifier`, else the FID InceptionV3 (weights `inception`, else
    the default ones: see `load_inception`)."""
    if classifier is not None:
        model = load_classifier(classifier)
        return Extractor(lambda images: model.embed(to_classifier_input(images, model)), model.config.image_size,
                         model, state_fingerprint(model.state_dict()))
    from rear.metrics.inception import load_inception

    inception_model = load_inception(inception)
    return Extractor(lambda images: inception_model.embed(to_inception_input(images)), None, None,
                     state_fingerprint(inception_model.state_dict()))


def reference_statistics(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a reference file keeps: pool mean/cov, spatial mean/cov, and pool features for P/R."""
    mu, sigma = statistics(features["pool"])
    mu_s, sigma_s = statistics(features["spatial"])
    return {"mu": mu, "sigma": sigma, "mu_s": mu_s, "sigma_s": sigma_s, "pool": features["pool"]}


def save_reference(path: str | Path, features: dict[str, np.ndarray], image_size: int, extractor: str) -> Path:
    """Statistics of reference `features` made by the extractor of fingerprint `extractor`, as .npz."""
    np.savez(path, image_size=image_size, extractor=np.array(extractor), **reference_statistics(features))
    return Path(path)


def load_reference(path: str | Path, embed: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
                   extractor: str | None = None) -> dict[str, np.ndarray]:
    """Saved statistics (`rear eval stats`, or an ADM reference batch such as
    VIRTUAL_imagenet256_labeled.npz: mu, sigma, mu_s, sigma_s and images arr_0). ADM files keep no
    pool features, so with `embed` they are computed from arr_0 for precision/recall. Statistics that
    record their extractor are refused for another one (`extractor`: its fingerprint)."""
    reference = read_npz(path)
    for key in ("mu", "sigma", "mu_s", "sigma_s"):
        if key not in reference:
            raise ValueError(f"{path} has no {key}; expected statistics from `rear eval stats` or an ADM reference batch")
    made_by = str(reference.get("extractor", ""))
    if extractor is not None and made_by and made_by != extractor:
        raise ValueError(f"{path} holds statistics of another feature extractor (weights sha256 {made_by[:12]}), "
                         f"not of this one ({extractor[:12]}); compute them again with `rear eval stats` and the "
                         "same --classifier / --inception")
    if "pool" not in reference:
        if "arr_0" not in reference or embed is None:
            raise ValueError(f"{path} has neither pool features nor reference images arr_0 for precision/recall")
        reference["pool"] = embed(reference["arr_0"])["pool"]
    return reference


def reference_images(spec: str, size: int, data_dir: str | None = None) -> np.ndarray:
    """uint8 [n, S, S, 3] images of a source (fashion-mnist:test, FOLDER:heldout, ...) at size S, or as
    they are of a plain folder of images or an .npz."""
    root, part = (spec, None) if spec.endswith(".npz") else parse_source(spec)
    if root == "fashion-mnist" or part:
        return to_uint8(read_all(open_source(spec, 3, data_dir), size)[0])
    return load_images(spec)[0]


def reference_for(spec: str, extractor: Extractor, image_size: int, data_dir: str | None = None,
                  tokenizer: VQTokenizer | None = None) -> tuple[dict[str, np.ndarray], tuple | None]:
    """The reference statistics that samples of `image_size` px are scored against, and the images read
    for them: saved statistics (`rear eval stats`, an ADM batch), else statistics of a source's images.
    With a `tokenizer` the source is read once, at its size and in its channels, and (images [n, C, S, S],
    labels [n]) come back for its ceiling (rear.evaluation.ceiling.source_ceiling's `read`)."""
    if spec.endswith(".npz") and Path(spec).is_file():
        reference = load_reference(spec, extractor.embed, extractor.fingerprint)
        if "image_size" in reference and int(reference["image_size"]) != image_size:
            raise ValueError(f"reference {spec} is of {int(reference['image_size'])} px images, samples are "
                             f"{image_size} px")
        return reference, None
    if tokenizer is not None:
        read = read_all(open_source(spec, tokenizer.channels, data_dir), tokenizer.image_size)
        return reference_statistics(extractor.embed(to_uint8(read[0].expand(-1, 3, -1, -1)))), read
    size = extractor.image_size or image_size
    return reference_statistics(extractor.embed(reference_images(spec, size, data_dir))), None


def score(
    features: dict[str, np.ndarray], reference: dict[str, np.ndarray], labels: np.ndarray | None, k: int = 3,
) -> dict:
    """All metrics of sample features against reference statistics (sFID when `features` has "spatial"), KID
    with its standard error, and `warnings` on what the set sizes imply (`small_set_warnings`)."""
    if features["pool"].shape[1] != reference["mu"].shape[0]:  # e.g. Inception statistics, classifier features
        raise ValueError(f"the reference holds statistics of {reference['mu'].shape[0]}-dim features, the samples' "
                         f"extractor gives {features['pool'].shape[1]}-dim ones; score with the extractor that made "
                         "the reference")
    metrics: dict = {"fid": frechet_distance(*statistics(features["pool"]), reference["mu"], reference["sigma"])}
    if "spatial" in features:  # sFID: a matrix square root of the spatial covariance, seconds at 1792 dims
        metrics["sfid"] = frechet_distance(*statistics(features["spatial"]), reference["mu_s"], reference["sigma_s"])
    metrics["kid"], metrics["kid_se"] = kernel_inception_distance(*_at_most(KID_ROWS, reference["pool"], features["pool"]))
    metrics["inception_score"] = inception_score(features["probs"], splits=min(10, len(features["probs"])))
    metrics["precision"], metrics["recall"] = precision_recall(reference["pool"], features["pool"], k=k)
    if labels is not None:
        metrics["class_accuracy"] = float((features["probs"].argmax(1) == labels).mean())
    metrics["num_samples"] = len(features["pool"])
    metrics["num_reference"] = len(reference["pool"])
    metrics["warnings"] = small_set_warnings(len(reference["pool"]), len(features["pool"]), features["pool"].shape[1], k)
    if labels is not None and (warning := chance_warning(metrics["class_accuracy"], features["probs"].shape[1])):
        metrics["warnings"].append(warning)
    return metrics


def chance_warning(accuracy: float, num_classes: int) -> str | None:
    """One line when the samples' class accuracy lies nearer chance (1/C) than 100%: most samples are then
    not recognisably of their class, and FID, KID, precision and recall describe something else."""
    chance = 1 / num_classes
    if accuracy >= (chance + 1) / 2:
        return None
    return (f"class accuracy {accuracy:.1%} lies nearer chance ({chance:.1%} for {num_classes} classes) than 100%: most "
            "samples are not recognisably of their class, so FID, KID, precision and recall here describe images that "
            "are not the classes; the tokenizer's ceiling (--tokenizer) tells whether the tokenizer or the generator "
            "loses them (a generator needs more images per class or more steps)")


KID_ROWS = 2000  # KID over at most this many rows of each set (a fixed random subset): seconds, not minutes


def _at_most(rows: int, *arrays: np.ndarray) -> list[np.ndarray]:
    """Each array, or a fixed random subset of `rows` of its rows (an unbiased KID stays unbiased)."""
    rng = np.random.default_rng(0)
    return [a if len(a) <= rows else a[np.sort(rng.choice(len(a), rows, replace=False))] for a in arrays]


def small_set_warnings(num_reference: int, num_samples: int, dim: int, k: int = 3) -> list[str]:
    """What the set sizes imply for the numbers, one line each (none for large sets)."""
    warnings = []
    small = [f"{what} holds {n} images" for what, n in (("the reference", num_reference), ("the sample set", num_samples))
             if n <= dim]
    if small:
        warnings.append(f"{' and '.join(small)}, not more than the {dim} feature dimensions: the covariance is singular, "
                        "so FID is biased upward and unstable at this size; trust KID (unbiased at any size, with its "
                        "standard error) and compare FIDs only against this same reference and sample count")
    if num_reference < 1000:
        warnings.append(f"precision and recall draw their manifolds from the k={k} nearest neighbours among "
                        f"{num_reference} reference images (each ball holds {k / max(num_reference - 1, 1):.1%} of "
                        "them): the balls are wide, so both run high; compare them only at equal set sizes")
    return warnings


def write_metrics(metrics: dict, path: str | Path) -> Path:
    Path(path).write_text(json.dumps(metrics, indent=2))
    return Path(path)
