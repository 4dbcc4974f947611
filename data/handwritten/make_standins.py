"""Draw synthetic stand-ins for one person's handwritten digits, and import them.

No real person's handwriting may be shipped, so these are drawn: each digit 0-9 is one
or two pen-stroke templates (arcs and lines, the way the digit is written, not a font),
bent by a random slant, aspect, size, rotation, off-centre position and a smooth hand
wobble, and rendered three ways a person makes digit images:

  paper  a dark pen on off-white paper under uneven light, slightly blurred, faint noise
         and maybe a speck of dirt, as a downscaled phone photo (420-640 px);
  paint  a brush in a paint program on a white canvas (400-720 px); some exported with a
         transparent background (grey + alpha);
  mouse  a 28x28 drawing with a 1-2 px aliased stroke, black on white.

Writes originals/{test,train}/<label>/<n>.png (test: 4 per label 0-4, 3 per label 5-9 =
35; train: 5 per label = 50, from another random stream, so no drawing repeats), then
imports both through handwriting.import_handwritten, the path a user's own digits take,
into test/ + test.txt and train/ + train.txt. Deterministic for a given --seed.

    python data/handwritten/make_standins.py [--seed 2024]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root, for handwriting.py
from handwriting import import_handwritten  # noqa: E402


def arc(cx, cy, rx, ry, a0, a1):
    """Points along an ellipse from angle a0 to a1 (degrees; y points down, so 0=right, 90=bottom)."""
    t = np.radians(np.linspace(a0, a1, max(8, int(abs(a1 - a0) / 6))))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


# Each digit: variants; each variant: strokes; each stroke: points in a box 1 high, ~0.7 wide.
TEMPLATES = {
    0: [[arc(0.35, 0.5, 0.3, 0.5, -80, -450)],
        [arc(0.34, 0.5, 0.26, 0.48, -100, 262)]],
    1: [[[(0.14, 0.2), (0.4, 0.0), (0.4, 1.0)]],
        [[(0.4, 0.0), (0.36, 1.0)]]],
    2: [[arc(0.33, 0.3, 0.28, 0.28, 200, 380) + [(0.36, 0.7), (0.05, 0.98), (0.7, 0.98)]],
        [arc(0.33, 0.28, 0.29, 0.27, 185, 400) + [(0.25, 0.78), (0.06, 0.98), (0.3, 0.96), (0.7, 1.0)]]],
    3: [[arc(0.33, 0.25, 0.27, 0.24, -200, 90) + arc(0.33, 0.735, 0.31, 0.265, -90, 150)],
        [arc(0.33, 0.25, 0.27, 0.24, -190, 110) + arc(0.33, 0.74, 0.31, 0.26, -110, 150)]],
    4: [[[(0.45, 0.0), (0.05, 0.65), (0.72, 0.65)], [(0.55, 0.3), (0.55, 1.0)]],
        [[(0.12, 0.0), (0.08, 0.6), (0.68, 0.6)], [(0.52, 0.08), (0.52, 1.0)]]],
    5: [[[(0.14, 0.02), (0.1, 0.44)] + arc(0.33, 0.69, 0.3, 0.28, -125, 155), [(0.14, 0.0), (0.64, 0.0)]],
        [[(0.12, 0.07), (0.1, 0.44)] + arc(0.33, 0.69, 0.3, 0.28, -125, 155), [(0.2, 0.02), (0.65, -0.01)]]],
    6: [[arc(0.6, 0.7, 0.52, 0.68, -100, -180) + arc(0.34, 0.73, 0.26, 0.26, 180, -170)]],
    7: [[[(0.05, 0.03), (0.66, 0.02), (0.28, 1.0)]],
        [[(0.05, 0.03), (0.66, 0.02), (0.28, 1.0)], [(0.2, 0.52), (0.58, 0.5)]]],
    8: [[arc(0.34, 0.25, 0.22, 0.24, -30, -270) + arc(0.34, 0.73, 0.29, 0.26, -90, 270)
         + arc(0.34, 0.25, 0.22, 0.24, 90, -30)],
        [arc(0.35, 0.25, 0.21, 0.24, -90, 275), arc(0.35, 0.735, 0.28, 0.255, -90, 275)]],
    9: [[arc(0.34, 0.27, 0.27, 0.26, 5, -355) + [(0.6, 0.25), (0.57, 1.0)]],
        [arc(0.34, 0.27, 0.27, 0.26, 5, -355) + [(0.6, 0.3), (0.58, 0.82), (0.48, 0.98), (0.3, 0.98)]]],
}


def resample(points, step):
    """Points every `step` along a polyline, so a wobble and a pen can follow it evenly."""
    p = np.asarray(points, dtype=float)
    seg = np.r_[0, np.cumsum(np.hypot(*np.diff(p, axis=0).T))]
    s = np.linspace(0, seg[-1], max(2, int(seg[-1] / step) + 1))
    return np.c_[np.interp(s, seg, p[:, 0]), np.interp(s, seg, p[:, 1])]


def hand(rng, label, box_w, box_h, x0, y0):
    """One person-like rendition of `label`: strokes as pixel-coordinate arrays in the given box."""
    strokes = TEMPLATES[label][rng.integers(len(TEMPLATES[label]))]
    slant, turn = rng.uniform(-0.08, 0.3), np.radians(rng.uniform(-6, 6))
    wobble = rng.uniform(0.008, 0.02)
    out = []
    for stroke in strokes:
        p = resample(stroke, 0.01)
        s = 0.01 * np.arange(len(p))[:, None]  # arc length, in digit heights
        for _ in range(2):  # smooth hand tremor: slow waves along the stroke, gentler on short ones
            amp = wobble * min(1.0, s[-1, 0])
            p = p + amp * np.sin(2 * np.pi * (rng.uniform(0.3, 1.2) * s + rng.uniform(0, 1, 2)))
        p = p + rng.normal(0, 0.01, 2)  # each stroke lands a little off where it was meant to
        x, y = p[:, 0] + slant * (0.5 - p[:, 1]), p[:, 1]  # slant: tops lean right
        x, y = x - 0.35, y - 0.5  # turn about the middle
        x, y = np.cos(turn) * x - np.sin(turn) * y, np.sin(turn) * x + np.cos(turn) * y
        out.append(np.c_[x0 + (x / 0.7 + 0.5) * box_w, y0 + (y + 0.5) * box_h])
    return out


def place(rng, W, H, frac):
    """A digit box of `frac` of the canvas height, with a random aspect, anywhere on the canvas."""
    bh = frac * H
    bw = min(0.7 * bh * rng.uniform(0.8, 1.25), 0.6 * W)
    lo, hi = 0.08 * W + 0.15 * bh, 0.92 * W - 0.15 * bh - bw  # room for the slant and the wobble
    return bw, bh, rng.uniform(lo, max(lo, hi)), rng.uniform(0.08 * H, 0.92 * H - bh)


def pen(draw, strokes, width, rng, scale=1.0):
    """Draw strokes as a chain of discs with slowly varying width (pen pressure)."""
    for stroke in strokes:
        p = resample(stroke * scale, max(1.0, width * scale / 4))
        pressure = 1 + 0.15 * np.sin(np.linspace(0, rng.uniform(2, 6), len(p)) + rng.uniform(0, 6))
        r = width * scale / 2 * pressure
        for (x, y), ri in zip(p, r):
            draw.ellipse([x - ri, y - ri, x + ri, y + ri], fill=255)


def paper(rng, label):
    W, H = int(rng.integers(420, 641)), int(rng.integers(420, 641))
    bw, bh, x0, y0 = place(rng, W, H, rng.uniform(0.3, 0.65))
    mask = Image.new("L", (2 * W, 2 * H), 0)
    pen(ImageDraw.Draw(mask), hand(rng, label, bw, bh, x0, y0), rng.uniform(0.03, 0.08) * bh, rng, 2.0)
    m = np.asarray(mask.resize((W, H), Image.BOX), dtype=np.float32) / 255  # anti-aliased, like a camera
    yy, xx = np.mgrid[0:H, 0:W] / max(W, H)
    a = rng.uniform(0, 2 * np.pi)  # light falls off across the sheet, with a darker corner
    light = 1 - rng.uniform(0.1, 0.3) * (np.cos(a) * xx + np.sin(a) * yy + 0.7) / 1.4
    light -= 0.15 * ((xx - rng.uniform(0, 1)) ** 2 + (yy - rng.uniform(0, 1)) ** 2)
    blotch = Image.fromarray(rng.normal(0, 3, (5, 5)).astype(np.float32)).resize((W, H), Image.BICUBIC)
    bg = rng.uniform(215, 250) * light + np.asarray(blotch)
    g = bg * (1 - 0.9 * m) + rng.uniform(20, 70) * 0.9 * m
    g = Image.fromarray(np.clip(g, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    g = np.asarray(g, dtype=float)
    # Sensor noise, sparse: dense noise would make each PNG ~100 KB (PNG cannot compress noise).
    g = g + (rng.random((H, W)) < 0.006) * rng.normal(0, 10, (H, W))
    img = Image.fromarray(np.clip(g + 0.5, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(rng.integers(0, 3)):  # a speck or two of dirt, away from the digit
        x, y, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(1, 3)
        if not (x0 - 20 < x < x0 + bw + 20 and y0 - 20 < y < y0 + bh + 20):
            d.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.uniform(90, 160)))
    return img


def paint(rng, label):
    W, H = int(rng.integers(400, 721)), int(rng.integers(400, 721))
    bw, bh, x0, y0 = place(rng, W, H, rng.uniform(0.4, 0.8))
    smooth = rng.random() < 0.5  # some paint programs anti-alias their brush, some do not
    mask = Image.new("L", (2 * W, 2 * H) if smooth else (W, H), 0)
    strokes = hand(rng, label, bw, bh, x0, y0)
    pen(ImageDraw.Draw(mask), strokes, rng.uniform(0.05, 0.12) * bh, rng, 2.0 if smooth else 1.0)
    if smooth:
        mask = mask.resize((W, H), Image.BOX)
    ink = int(rng.choice([0, 0, 40]))  # black, or a dark blue seen in grey
    if rng.random() < 0.3:  # exported with a transparent background
        return Image.merge("LA", (Image.new("L", (W, H), ink), mask))
    return Image.fromarray((255 - (255 - ink) * (np.asarray(mask) / 255.0)).astype(np.uint8))


def mouse(rng, label):
    bw, bh, x0, y0 = place(rng, 28, 28, rng.uniform(0.5, 0.82))
    img = Image.new("L", (28, 28), 255)
    d = ImageDraw.Draw(img)
    width = int(rng.choice([1, 1, 2]))
    for stroke in hand(rng, label, bw, bh, x0, y0):
        d.line([tuple(p) for p in resample(stroke, 1.5)], fill=0, width=width)
    return img


def draw_set(folder: Path, per_label: dict[int, int], rng) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    kinds = [paper, paint, mouse, paint, paper]
    for label, n in per_label.items():
        (folder / str(label)).mkdir(parents=True)
        for i in range(n):
            img = kinds[(label + i) % len(kinds)](rng, label)
            img.save(folder / str(label) / f"{i}.png", optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=2024)
    args = p.parse_args(argv)
    sets = {"test": {d: 4 if d < 5 else 3 for d in range(10)}, "train": {d: 5 for d in range(10)}}
    for k, (name, per_label) in enumerate(sets.items()):
        draw_set(HERE / "originals" / name, per_label, np.random.default_rng([args.seed, k]))
        import_handwritten(HERE / "originals" / name, HERE / name, force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
