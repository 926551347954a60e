"""What `rear serve` does, without the web framework: read a request, sample it, show the raster fill.

A `Studio` holds one generator and its tokenizer and runs at most one generation at a time (a second
request while one runs is refused, not queued), each of at most `max_images` images. A generation is
a `Job`: a list of events a page reads in order (tokens drawn so far, partial grids), then the grid
PNG. Shapes: B images, N tokens, h x w token grid, C channels, H x W pixels.
"""
from __future__ import annotations

import base64
import io
import json
import math
import secrets
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from rear.checkpoint import Generation, load_generator, read_generation
from rear.config import SampleConfig, ServeConfig, check_ranges
from rear.generator import Generator
from rear.images import tile
from rear.tokenizer.base import VQTokenizer


class Busy(RuntimeError):
    """Another generation is running."""


@dataclass
class Request:
    """One generation: a label per image and how to sample them."""

    labels: list[int]
    sample: SampleConfig
    seed: int


class Cancelled(RuntimeError):
    """The server is stopping: the generation in flight ends at its next token."""


def describe_request(request: Request, class_names: list[str]) -> tuple[str, str, dict[str, str]]:
    """(caption, download file name, PNG text fields) of a request: its seed and every sampling setting."""
    s = request.sample
    classes = list(dict.fromkeys(class_names[i] for i in request.labels))
    caption = (f"{len(request.labels)} images of {', '.join(classes)}; seed {request.seed}, CFG {s.cfg_scale:g} "
               f"(power {s.cfg_power:g}), temperature {s.temperature:g}, top-k {s.top_k or 'off'}, "
               f"top-p {s.top_p if s.top_p is not None else 'off'}")
    name = (f"rear-seed{request.seed}-cfg{s.cfg_scale:g}-pow{s.cfg_power:g}-t{s.temperature:g}"
            + (f"-k{s.top_k}" if s.top_k else "") + (f"-p{s.top_p:g}" if s.top_p is not None else "") + ".png")
    text = {"Software": "rear serve", "Description": caption,
            "rear:settings": json.dumps({**asdict(s), "seed": request.seed, "labels": request.labels,
                                         "classes": [class_names[i] for i in request.labels]})}
    return caption, name, text


class Job:
    """One generation: the events a page reads in order, then the grid PNG."""

    def __init__(self, num_tokens: int, request: Request, class_names: list[str]) -> None:
        self.id = secrets.token_hex(8)
        self.num_tokens = num_tokens
        self.labels = [class_names[i] for i in request.labels]  # the class name of each image, in grid order
        self.columns = grid_columns(len(request.labels))
        self.caption, self.filename, self.text = describe_request(request, class_names)
        self.events: list[dict[str, Any]] = []  # appended by the worker thread only
        self.png: Optional[bytes] = None
        self.finished = False

    def reply(self) -> dict[str, Any]:
        """What the page learns when the job starts: how to label the grid and name the download."""
        return {"job": self.id, "num_tokens": self.num_tokens, "labels": self.labels, "columns": self.columns,
                "caption": self.caption, "filename": self.filename}


# ---------------------------------------------------------------- reading a request
def shown(value: Any, limit: int = 40) -> str:
    """repr(value) cut to `limit` characters: a message never echoes unbounded input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _real(name: str, value: Any) -> float:
    """value as a finite float, or a ValueError naming `name`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {shown(value)}") from None
    if not math.isfinite(number) or isinstance(value, bool):
        raise ValueError(f"{name} must be a finite number, got {shown(value)}")
    return number


def _whole(name: str, value: Any) -> int:
    """value as an int, or a ValueError naming `name`."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return int(value)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a whole number, got {shown(value)}")


def _within(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    if value < low or value > high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must lie in {interval}, got {value:g}")


def resolve_class(name: Any, class_names: list[str]) -> int:
    """A class index from its name (exact, then any case) or its index; a ValueError naming the choices."""
    text = str(name).strip()
    for same in (lambda n: n == text, lambda n: n.casefold() == text.casefold()):
        for i, n in enumerate(class_names):
            if same(n):
                return i
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    names = ", ".join(repr(n) for n in class_names[:5]) + (", ..." if len(class_names) > 5 else "")
    raise ValueError(f"no class {shown(text)} in this checkpoint; its {len(class_names)} classes are {names} "
                     f"(a name or an index 0..{len(class_names) - 1})")


def parse_request(body: Any, defaults: dict[str, Any], class_names: list[str], codebook_size: int,
                  config: ServeConfig) -> Request:
    """Check a request (JSON object; missing fields take `defaults`) and build it; ValueError names the problem."""
    if not isinstance(body, dict):
        raise ValueError("the request must be a JSON object of fields")
    unknown = sorted(set(body) - set(defaults))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(shown(u) for u in unknown[:3])}; the fields are "
                         f"{', '.join(defaults)}")
    fields = {**defaults, **body}
    count = _whole("count", fields["count"])
    if not 1 <= count <= config.max_images:
        raise ValueError(f"count must lie in [1, {config.max_images}] (this server's most images per request), "
                         f"got {count}")
    chosen = fields["classes"]
    chosen = [chosen] if isinstance(chosen, (str, int)) else chosen
    if not isinstance(chosen, list) or not chosen:
        raise ValueError("choose at least one class")
    if len(chosen) > count:
        raise ValueError(f"{len(chosen)} classes for {count} images: ask for at least one image per class")
    classes = [resolve_class(c, class_names) for c in chosen]
    sample = SampleConfig(
        cfg_scale=_real("cfg_scale", fields["cfg_scale"]),
        cfg_power=_real("cfg_power", fields["cfg_power"]),
        temperature=_real("temperature", fields["temperature"]),
        top_k=None if fields["top_k"] in (None, "") else _whole("top_k", fields["top_k"]),
        top_p=None if fields["top_p"] in (None, "") else _real("top_p", fields["top_p"]),
    )
    _within("cfg_scale", sample.cfg_scale, 1, config.max_cfg_scale)
    _within("cfg_power", sample.cfg_power, 0, config.max_cfg_power, low_open=True)
    _within("temperature", sample.temperature, 0, config.max_temperature, low_open=True)
    if sample.top_k is not None:
        _within("top_k", sample.top_k, 1, codebook_size)
    if sample.top_p is not None:
        _within("top_p", sample.top_p, 0, 1, low_open=True)
    sample.validate()  # the bounds every sampling path shares (rear.config.SampleConfig)
    seed = _whole("seed", fields["seed"])
    _within("seed", seed, 0, 2**63 - 1)
    # the chosen classes in turn, each over a block of images: one row per class when the grid allows
    labels = [classes[i * len(classes) // count] for i in range(count)]
    return Request(labels, sample, seed)


# ---------------------------------------------------------------- pictures
def grid_png(images: torch.Tensor, columns: int, text: Optional[dict[str, str]] = None) -> bytes:
    """PNG bytes of images [B, C, H, W] in [0, 1] tiled as every grid of rear is, with `text` as PNG
    text chunks (the settings that made it travel with the file)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    tile(images, columns).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def grid_columns(count: int) -> int:
    """Columns of a near-square grid of `count` images."""
    return math.ceil(math.sqrt(count))


def data_url(png: bytes) -> str:
    """An <img src> holding the PNG itself."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def partial_raster(tokenizer: VQTokenizer, tokens: torch.Tensor) -> torch.Tensor:
    """Decode the first n tokens [B, n] of a 2D raster: pixel rows below the complete token rows are mid-grey."""
    (h, w), (B, n) = tokenizer.grid, tokens.shape
    ids = tokens.new_zeros(B, tokenizer.num_tokens)  # [B, N]; code 0 stands in for what is not drawn yet
    ids[:, :n] = tokens
    images = tokenizer.decode(ids)  # [B, C, H, W]
    images[:, :, (n // w) * images.shape[-2] // h :] = 0.5
    return images


# ---------------------------------------------------------------- the studio
class Studio:
    """A generator and its tokenizer behind a lock: one bounded generation at a time."""

    def __init__(self, model: Generator, tokenizer: VQTokenizer, generation: Optional[Generation],
                 config: ServeConfig = ServeConfig()) -> None:
        check_ranges(config)  # a ServeConfig built in Python gets the bounds a merged config gets
        C = model.config.num_classes
        names = generation.class_names if generation is not None and generation.class_names else None
        if names is not None and len(names) != C:
            raise ValueError(f"the checkpoint names {len(names)} classes but its generator has {C}; "
                             "fix class_names in its generation_config.json")
        self.model, self.tokenizer, self.config = model.eval(), tokenizer, config
        self.class_names = list(names) if names is not None else [f"class {i}" for i in range(C)]
        sample = generation.sample if generation is not None and generation.sample is not None else SampleConfig()
        self.defaults = {"classes": [self.class_names[0]], "count": min(config.images, config.max_images),
                         **asdict(sample), "seed": 0}
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._running = threading.Lock()
        self._closing = threading.Event()

    def close(self) -> None:
        """Stop: refuse new generations and end the one in flight at its next token."""
        self._closing.set()

    def settings(self) -> str:
        """The sampling settings the page starts from, in one line."""
        d = self.defaults
        return (f"cfg_scale {d['cfg_scale']:g}, cfg_power {d['cfg_power']:g}, temperature {d['temperature']:g}, "
                f"top_k {d['top_k']}, top_p {d['top_p']}")

    @property
    def spatial(self) -> bool:
        """Whether a partial raster is a partial picture (a 2D token grid), not a 1D sequence."""
        return self.tokenizer.grid[0] > 1

    def info(self) -> dict[str, Any]:
        """What the page needs: class names, defaults, bounds, the token grid."""
        c = self.config
        return {"classes": self.class_names, "defaults": self.defaults, "num_tokens": self.tokenizer.num_tokens,
                "grid": list(self.tokenizer.grid), "spatial": self.spatial, "image_size": self.tokenizer.image_size,
                "limits": {"max_images": c.max_images, "max_cfg_scale": c.max_cfg_scale,
                           "max_cfg_power": c.max_cfg_power, "max_temperature": c.max_temperature,
                           "codebook_size": self.tokenizer.codebook_size}}

    def submit(self, body: Any) -> Job:
        """Check a request and start it on a worker thread; ValueError on bad input, Busy while one runs."""
        request = parse_request(body, self.defaults, self.class_names, self.tokenizer.codebook_size, self.config)
        if self._closing.is_set():
            raise Busy("the server is stopping")
        if not self._running.acquire(blocking=False):
            raise Busy("another generation is running (one at a time); try again when it has finished")
        for finished in self.jobs.values():  # drop their partial grids (memory); a late reader still gets the last
            finished.events[:-1] = [{k: v for k, v in e.items() if k != "image"} for e in finished.events[:-1]]
        job = Job(self.tokenizer.num_tokens, request, self.class_names)
        self.jobs[job.id] = job
        while len(self.jobs) > self.config.kept_jobs:
            self.jobs.popitem(last=False)
        threading.Thread(target=self._run, args=(job, request), daemon=True).start()
        return job

    def _marks(self) -> tuple[set[int], set[int]]:
        """(token counts that get a progress event, those that also get a partial grid)."""
        (h, w), N = self.tokenizer.grid, self.tokenizer.num_tokens
        counts = set(range(0, N, max(1, math.ceil(N / self.config.progress_steps)))) - {0}
        rows = torch.linspace(1, h, min(h, self.config.snapshots)).round().long().tolist()
        pictures = {r * w for r in rows if r < h} if self.spatial else set()
        return counts | pictures, pictures

    def _run(self, job: Job, request: Request) -> None:
        columns = job.columns
        counts, pictures = self._marks()

        def on_token(n: int, tokens: torch.Tensor) -> None:  # tokens [B, n]
            if self._closing.is_set():
                raise Cancelled("cancelled: the server is stopping")
            if n in counts:
                event: dict[str, Any] = {"tokens": n, "of": job.num_tokens}
                if n in pictures:
                    event["image"] = data_url(grid_png(partial_raster(self.tokenizer, tokens), columns))
                job.events.append(event)

        try:
            device = next(self.model.parameters()).device
            tokens = self.model.generate(torch.tensor(request.labels, device=device), request.sample,
                                         rng=torch.Generator(device).manual_seed(request.seed), on_token=on_token)
            images = self.tokenizer.decode(tokens)  # [B, C, H, W]
            job.png = grid_png(images, columns, job.text)
            job.events.append({"tokens": job.num_tokens, "of": job.num_tokens, "image": data_url(job.png),
                               "done": True})
        except Cancelled as error:
            job.events.append({"error": str(error)})
        except Exception as error:  # a failed generation ends its job, never the server
            job.events.append({"error": f"generation failed: {error}"})
        finally:
            job.finished = True
            self._running.release()


def load_studio(checkpoint: str | Path, tokenizer_path: str | Path, device: str | torch.device = "cpu",
                config: ServeConfig = ServeConfig()) -> Studio:
    """A studio for a checkpoint folder and its tokenizer; ValueError when they do not fit each other."""
    from rear.tokenizer.load import load_tokenizer

    model = load_generator(checkpoint, device)
    tokenizer = load_tokenizer(tokenizer_path, device)
    tokenizer.check_fits(model.config.codebook_size, model.config.num_tokens, f"checkpoint {checkpoint}")
    return Studio(model, tokenizer, read_generation(checkpoint), config)
