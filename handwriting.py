"""Turn a photo, scan or drawing of one handwritten digit into a 28x28 MNIST-style image,
and import a folder of them (CLI: python dataset.py import-handwritten SRC --out data/handwritten/NAME).

MNIST's recipe: white digit on black, scaled so its longer side is 20 px (aspect kept,
anti-aliased), shifted by whole pixels so its intensity centre of mass sits at (14, 14) in
0-based (row, column) pixel indices: where MNIST's own train digits have it (13.996, 14.004).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from dataset import DataError, open_image, to_white_on_black, write_index

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
WORK_SIDE = 1024      # shrink bigger images to this first: a 12 MP photo takes ~0.1 s and ~20 MB
BOX, CENTRE = 20, 14  # MNIST: longer side 20 px, centre of mass at pixel index 14
MIN_CONTRAST = 24     # ink must stand this many grey levels (of 255) above the paper
MIN_WIDTH, TARGET_WIDTH = 1.5, 2.0  # stroke widths in final px; MNIST's median is 2.0 (quartiles 1.6-2.3)


def _rank_filter(a: np.ndarray, k: int, op) -> np.ndarray:
    """Separable k x k min or max filter (op = np.min / np.max), edges replicated."""
    for axis in (0, 1):
        pad = [(k // 2, k - 1 - k // 2) if ax == axis else (0, 0) for ax in (0, 1)]
        a = op(sliding_window_view(np.pad(a, pad, mode="edge"), k, axis=axis), axis=-1)
    return a


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float array -> (width, height); area-averaging when shrinking (anti-aliased), bilinear when growing."""
    shrink = size[0] <= a.shape[1] and size[1] <= a.shape[0]
    img = Image.fromarray(a.astype(np.float32))
    return np.asarray(img.resize(size, Image.BOX if shrink else Image.BILINEAR), dtype=np.float32)


def _scaled(a: np.ndarray, f: float) -> np.ndarray:
    return _resize(a, (max(1, round(a.shape[1] * f)), max(1, round(a.shape[0] * f))))


def _background(g: np.ndarray) -> np.ndarray:
    """The paper's uneven lighting: a morphological opening with a window of an eighth of the
    image removes pen strokes (thinner) but keeps gradients and shadows (wider). Done on a
    ~128 px copy: cheap even for big windows."""
    f = max(1, max(g.shape) // 128)
    small = _scaled(g, 1 / f)
    k = max(3, max(small.shape) // 8)
    opened = _rank_filter(_rank_filter(small, k, np.min), k, np.max)
    return _resize(opened, g.shape[::-1])


def _otsu(g: np.ndarray) -> float:
    hist = np.bincount(np.clip(g, 0, 255).astype(np.int64).ravel(), minlength=256).astype(np.float64)
    w0, m0 = np.cumsum(hist), np.cumsum(hist * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):  # between-class variance, up to a constant
        between = (m0[-1] * w0 - m0 * w0[-1]) ** 2 / (w0 * (w0[-1] - w0))
    return float(np.argmax(np.nan_to_num(between[:-1]))) + 0.5


def _components(mask: np.ndarray) -> list[dict]:
    """8-connected components of `mask`, largest first, by union-find over row runs (few, so fast).
    Each: {'runs': [(y, x0, x1)], 'area': pixels, 'box': [y0, x0, y1, x1] inclusive}."""
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = parent[i]
        return i

    runs, prev = [], []
    for y, row in enumerate(mask):
        d = np.diff(row.astype(np.int8), prepend=0, append=0)
        cur, j = [], 0
        for x0, x1 in zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()):  # [x0, x1)
            parent.append(len(runs))
            while j < len(prev) and runs[prev[j]][2] < x0:  # both rows' runs are in x order
                j += 1
            for k in prev[j:]:  # the runs above touching this one, diagonally included
                if runs[k][1] > x1:
                    break
                parent[find(k)] = len(runs)
            cur.append(len(runs))
            runs.append((y, x0, x1))
        prev = cur
    comps: dict[int, dict] = {}
    for i, (y, x0, x1) in enumerate(runs):
        c = comps.setdefault(find(i), {"runs": [], "area": 0, "box": [y, x0, y, x1 - 1]})
        c["runs"].append((y, x0, x1))
        c["area"] += x1 - x0
        c["box"] = [min(c["box"][0], y), min(c["box"][1], x0), y, max(c["box"][3], x1 - 1)]
    return sorted(comps.values(), key=lambda c: -c["area"])


def _digit_components(comps: list[dict]) -> list[dict]:
    """The largest component, and every other one big enough for its distance from the digit's
    box: a part with q times the largest's area may lie up to 4q box-lengths away (q >= 2%).
    So a detached bar of a '5' (a fifth of the ink, close by) stays, a speck of dirt goes."""
    big = comps[0]["area"]
    kept, rest = comps[:1], [c for c in comps[1:50] if c["area"] >= 0.02 * big]
    while rest:
        y0, x0 = (min(c["box"][i] for c in kept) for i in (0, 1))
        y1, x1 = (max(c["box"][i] for c in kept) for i in (2, 3))
        side = max(y1 - y0, x1 - x0) + 1
        near = [c for c in rest if max(0, c["box"][0] - y1, y0 - c["box"][2], c["box"][1] - x1,
                                       x0 - c["box"][3]) <= 4 * c["area"] / big * side]
        if not near:
            break
        kept += near
        rest = [c for c in rest if c not in near]
    return kept


def _stroke_width(b: np.ndarray) -> float:
    """2 * area / boundary length: a stroke of length L and width w has area wL and ~2L of edge."""
    p = np.pad(b, 1)
    edges = np.count_nonzero(p[1:] != p[:-1]) + np.count_nonzero(p[:, 1:] != p[:, :-1])
    return 2.0 * np.count_nonzero(b) / max(edges, 1)


def _dilate_disc(a: np.ndarray, r: int) -> np.ndarray:
    h, w = a.shape
    out = np.zeros((h + 2 * r, w + 2 * r), dtype=a.dtype)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= r * r + r:  # a disc: strokes thicken alike in every direction
                view = out[r + dy : r + dy + h, r + dx : r + dx + w]
                np.maximum(view, a, out=view)
    return out


def _crop(a: np.ndarray, level: float) -> np.ndarray:
    ys, xs = np.nonzero(a > level)
    return a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _to_workable(img: Image.Image) -> Image.Image:
    """Bring any mode to one PIL can shrink with area averaging, then shrink to WORK_SIDE."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):  # 16-bit / float: scale, do not clip
        a = np.asarray(img, dtype=np.float32)
        img = Image.fromarray(((a - a.min()) * (255 / max(float(a.max() - a.min()), 1e-6))).astype(np.uint8))
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("L" if img.mode == "1" else "RGB")
    f = WORK_SIDE / max(img.size)
    if f < 1:
        img = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.BOX)
    return img


def normalize_digit(img: Image.Image, name: str) -> np.ndarray:
    """One digit image of any size and mode -> uint8 28x28, white digit on black, MNIST-style.
    Raises DataError (one line, starting with `name`) for a tiny or blank image."""
    if max(img.size) < 8:
        raise DataError(f"{name}: image is {img.width}x{img.height} px, too small to hold a digit")
    g = to_white_on_black(_to_workable(img)).astype(np.float32)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.percentile(border, 90) - np.percentile(border, 10) > MIN_CONTRAST / 2:
        # Unevenly lit paper (a photo): flatten it; not done for even backgrounds (drawings), whose
        # strokes may be bolder than the window. Light multiplies, so divide by the paper's brightness.
        bg = _background(g)
        g = 255 * np.maximum(g - bg, 0) / np.maximum(255 - bg, 32)
    # Noise from neighbour differences (mostly paper): about sigma for a photo, 0 for a drawing.
    sigma = float(np.median(np.abs(np.diff(g, axis=1)))) / 0.954 if g.shape[1] > 1 else 0.0
    t = _otsu(g)
    fg, paper = g[g > t], g[g <= t]
    paper_level = float(np.median(paper)) if paper.size else 0.0
    if not fg.size or not paper.size or fg.mean() - paper_level < max(MIN_CONTRAST, 5 * sigma):
        raise DataError(f"{name}: blank image, no digit found")
    keep = np.zeros(g.shape, dtype=bool)
    for c in _digit_components(_components(g > max(t, paper_level + 3 * sigma))):
        for y, x0, x1 in c["runs"]:
            keep[y, x0:x1] = True
    # Stretch paper -> 0, most ink -> 1; pixels just beside kept strokes keep their anti-aliasing.
    lo, hi = paper_level + 2 * sigma, float(np.median(g[keep]))
    ink = np.clip((g - lo) / max(hi - lo, 1.0), 0, 1) * _rank_filter(keep.astype(np.float32), 3, np.max)
    ink = _crop(ink, 0)
    # Thin strokes (a 1-px mouse line, a ballpoint on a photo) would shrink to faint grey threads:
    # thicken them to MNIST's median width, which the classifier knows. Measured and done at 4x
    # the final size; a shrink to there first spreads them, so they arrive at full strength.
    f = 4 * BOX / max(ink.shape)
    thin = _stroke_width(ink > 0.5) * f / 4 < MIN_WIDTH
    ink = _scaled(_rank_filter(ink, int(np.ceil(1 / f)), np.max) if thin and f < 0.5 else ink, f)
    if thin:
        ink = _dilate_disc(ink, int(np.ceil(2 * (TARGET_WIDTH - _stroke_width(ink > 0.5) / 4))))
    ink = _crop(ink, 0.25)  # fringes under a quarter of full ink do not count toward the 20-px box
    patch = _scaled(ink, BOX / max(ink.shape))
    patch = patch / patch.max()
    # MNIST's centring: the whole-pixel shift putting the centre of mass nearest (14, 14),
    # clamped so the 20-px box stays inside the 28x28 grid.
    ys, xs = np.indices(patch.shape)
    oy = int(np.clip(round(CENTRE - (ys * patch).sum() / patch.sum()), 0, 28 - patch.shape[0]))
    ox = int(np.clip(round(CENTRE - (xs * patch).sum() / patch.sum()), 0, 28 - patch.shape[1]))
    out = np.zeros((28, 28), dtype=np.uint8)
    out[oy : oy + patch.shape[0], ox : ox + patch.shape[1]] = np.round(patch * 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------- importing a folder of your own digits

def _candidates(src: Path) -> list[tuple[Path, str, str]]:
    """(file, label text, output stem) for each entry of either layout: <label>/<file>, <label>_<x>.<ext>."""
    entries = sorted(e for e in src.iterdir() if not e.name.startswith("."))
    dirs = [e for e in entries if e.is_dir()]
    files = [e for e in entries if not e.is_dir()]
    if dirs and any(f.suffix.lower() in IMAGE_EXTS for f in files):
        raise DataError(f"{src}: mixes <label>/ folders with image files at the top; use one layout")
    if dirs:
        inside = [(f, d.name, f"{d.name}_{f.stem}") for d in dirs
                  for f in sorted(d.iterdir()) if not f.name.startswith(".")]
        return inside + [(f, "", f.stem) for f in files]  # stray top-level files are refused below
    if not any("_" in f.stem for f in files):
        raise DataError(f"{src}: no <label>/ folders and no files named <label>_<anything>.<ext>; "
                        "cannot tell the labels")
    return [(f, f.stem.split("_", 1)[0] if "_" in f.stem else "", f.stem) for f in files]


def import_handwritten(src, out, force: bool = False) -> dict:
    """Normalise SRC's digit images into OUT/*.png and the index OUT.txt; print a report and return
    {label: number taken, ..., 'refused': [(file, reason), ...]}. An existing set is replaced
    only with force=True, and then wholly."""
    src, out = Path(src), Path(out)
    index = out.parent / f"{out.name}.txt"
    if not src.is_dir() or (out.exists() and not out.is_dir()):
        raise DataError(f"{src if not src.is_dir() else out}: not a folder")
    o, i = out.resolve(), src.resolve()
    if o == i or o in i.parents or i in o.parents:  # replacing OUT must never touch the originals
        raise DataError(f"{out}: overlaps {src}, the folder being imported; choose another --out")
    if (index.exists() or (out.is_dir() and any(out.iterdir()))) and not force:
        raise DataError(f"{out}: a set of this name already exists ({index}); use --force to replace it")
    taken: dict[str, list] = {}  # label text -> [(file name, 28x28 array)]
    refused, used = [], set()  # refused: (label text, file, reason)
    for f, label, stem in _candidates(src):
        rel = f.relative_to(src).as_posix()
        if f.is_dir():
            reason = "a folder inside a label folder; expected image files"
        elif not label:
            reason = "not in a <label>/ folder and not named <label>_<anything>"
        elif not (len(label) == 1 and label.isdigit()):
            reason = f"bad label {label!r}: must be one digit 0-9"
        elif f.suffix.lower() not in IMAGE_EXTS:
            reason = f"not an image (extension {f.suffix or 'none'!r})"
        else:
            try:
                digit = normalize_digit(open_image(str(f), rel), rel)
            except DataError as e:
                refused.append((label, rel, str(e).removeprefix(f"{rel}: ")))
                continue
            name = unique = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
            k = 1
            while unique.lower() in used:  # lower(): unique on case-insensitive file systems too
                k += 1
                unique = f"{name}-{k}"
            used.add(unique.lower())
            taken.setdefault(label, []).append((f"{unique}.png", digit))
            continue
        refused.append((label, rel, reason))
    print(f"import {src} -> {index}")
    labels = sorted({*taken, *(r[0] for r in refused)})
    for label in labels:
        bad = [r for r in refused if r[0] == label]
        print(f"  label {label or '?'}: {len(taken.get(label, []))} taken, {len(bad)} refused")
        print("".join(f"      refused {rel}: {reason}\n" for _, rel, reason in bad), end="")
    if not taken:
        raise DataError(f"{src}: no usable digit images ({len(refused)} refused)")
    # Build the whole set beside OUT, then swap it in; the old index goes first and the new
    # one is written last, so a crash never leaves an index over a half-written set.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = out.parent / f".{out.name}.new", out.parent / f".{out.name}.old"
    for leftover in (tmp, old):  # from an import that crashed
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir()
    rows = [(f"{out.name}/{fname}", int(label)) for label in sorted(taken) for fname, _ in taken[label]]
    for label in taken:
        for fname, digit in taken[label]:
            Image.fromarray(digit).save(tmp / fname, optimize=True)
    index.unlink(missing_ok=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    where = Path(os.path.relpath(src.resolve(), index.parent.resolve())).as_posix()
    write_index(index, rows, f"{len(rows)} handwritten digits imported from {where} "
                f"by handwriting.import_handwritten (28x28, MNIST-style)")
    counts = {int(lb): len(taken.get(lb, [])) for lb in labels if lb.isdigit() and len(lb) == 1}
    return {**counts, "refused": [r[1:] for r in refused]}
