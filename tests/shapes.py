"""A colour (or gray) image folder the project has never seen: one class per shape, drawn at a random size,
place and angle in a random colour on a random background colour, so that only the shape tells the class.

    python tests/shapes.py OUT [--classes 3] [--per-class 600] [--size 32] [--gray] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star", "bar", "diamond", "heart", "arrow")


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of the polygon shapes around (cx, cy) with radius r, rotated by `angle`."""
    if kind == "square":
        points = [(math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
    elif kind == "triangle":
        points = [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    elif kind == "diamond":
        points = [(0.6 * math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2]
    elif kind == "star":
        points = [((1 if i % 2 == 0 else 0.45) * math.cos(a), (1 if i % 2 == 0 else 0.45) * math.sin(a))
                  for i, a in enumerate(np.arange(10) * math.pi / 5 - math.pi / 2)]
    elif kind == "cross":
        w = 0.35
        points = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
    elif kind == "bar":
        points = [(-1, -0.3), (1, -0.3), (1, 0.3), (-1, 0.3)]
    elif kind == "arrow":
        points = [(-1, -0.25), (0.2, -0.25), (0.2, -0.7), (1, 0), (0.2, 0.7), (0.2, 0.25), (-1, 0.25)]
    elif kind == "heart":
        t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        points = list(zip(np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)) / 16))
    else:
        raise ValueError(kind)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points]


def draw(kind: str, size: int, rng: np.random.Generator, gray: bool = False) -> Image.Image:
    """One image: the shape in one random colour on another, at least 80 levels apart in some channel."""
    while True:
        fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if gray:
            fg, bg = fg[:1].repeat(3), bg[:1].repeat(3)
        if np.abs(fg.astype(int) - bg).max() >= 80:
            break
    scale = 4  # drawn at 4x and downsampled: smooth edges
    S = size * scale
    image = Image.new("RGB", (S, S), tuple(int(v) for v in bg))
    pen = ImageDraw.Draw(image)
    r = rng.uniform(0.22, 0.4) * S
    cx, cy = rng.uniform(r, S - r), rng.uniform(r, S - r)
    colour = tuple(int(v) for v in fg)
    if kind == "circle":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "ring":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        pen.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=tuple(int(v) for v in bg))
    else:
        pen.polygon(_polygon(kind, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=colour)
    image = image.resize((size, size), Image.BICUBIC)
    return image.convert("L") if gray else image


def make_shapes(out: str | Path, classes: int = 3, per_class: int = 600, size: int = 32, gray: bool = False,
                seed: int = 0) -> Path:
    """OUT/<shape>/<i>.png for the first `classes` shapes."""
    if not 2 <= classes <= len(SHAPES):
        raise ValueError(f"classes must lie in [2, {len(SHAPES)}]")
    out = Path(out)
    rng = np.random.default_rng(seed)
    for kind in SHAPES[:classes]:
        (out / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(kind, size, rng, gray).save(out / kind / f"{i:05d}.png")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--gray", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_shapes(args.out, args.classes, args.per_class, args.size, args.gray, args.seed))
