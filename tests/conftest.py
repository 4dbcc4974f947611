"""Shared fixtures and helpers for the test suite.

Fixtures (reuse them in new test files rather than building data by hand):

    tiny_mnist_raw   session  folder with MNIST's four gzip IDX files holding 600 train /
                              200 test digits (every label 0-9 in both): the first
                              TINY_COUNTS[split] // 10 of each label from the real MNIST
                              when it is available, else synthetic 7-segment digits.
    tiny_data        session  a data dir prepared from tiny_mnist_raw by mnist.prepare_mnist:
                              mnist/{train,test}/<label>/<n>.png + train.txt / test.txt.
                              Shared by the whole session: read it, don't modify it.
    real_mnist_dir   session  Path of the real MNIST raw folder ($MNIST_DIR, else
                              ../shared/data/MNIST/raw beside the repo); skips the test
                              when it is absent.
    tiny_counts      session  {"train": 600, "test": 200}: the sample counts in tiny_mnist_raw
    make_png                  returns make_png(path, array_or_label, mode="L", ...) -> Path
    write_lines               returns write_lines(path, lines, newline="\\n") -> Path
    write_idx                 returns write_idx(path, uint8 array) -> Path (gzip if *.gz)

The helpers are handed out by fixtures rather than imported from conftest, so the tests
work under any pytest import mode.

Set TESTS_SYNTHETIC_MNIST=1 to build tiny_mnist_raw from synthetic digits even when the
real MNIST is present (to check the suite runs without the shared folder).
"""
from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import mnist  # noqa: E402  (needs REPO_ROOT on sys.path)

TINY_COUNTS = {"train": 600, "test": 200}  # multiples of 10: TINY_COUNTS[split] // 10 per label


# ---------------------------------------------------------------- plain helpers

def find_real_mnist() -> Path | None:
    """The real MNIST raw folder: $MNIST_DIR if it holds the files, else ../shared/data/MNIST/raw."""
    candidates = []
    if os.environ.get("MNIST_DIR"):
        candidates.append(Path(os.environ["MNIST_DIR"]))
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "MNIST" / "raw")
    for c in candidates:
        if mnist.has_mnist(c):
            return c.resolve()
    return None


def _write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzip-compressed when the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "wb", compresslevel=1, mtime=0) as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


# 7-segment layout on a 28x28 canvas: segment -> line endpoints (x0, y0, x1, y1)
_SEGMENTS = {
    "a": (9, 5, 18, 5), "b": (18, 5, 18, 14), "c": (18, 14, 18, 23), "d": (9, 23, 18, 23),
    "e": (9, 14, 9, 23), "f": (9, 5, 9, 14), "g": (9, 14, 18, 14),
}
_DIGIT_SEGMENTS = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg"]


def digit_image(label: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A 28x28 uint8 white-on-black 7-segment digit, jittered in position and stroke width by rng."""
    rng = rng or np.random.default_rng(label)
    dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
    width = int(rng.integers(2, 4))
    img = Image.new("L", (28, 28), 0)
    draw = ImageDraw.Draw(img)
    for seg in _DIGIT_SEGMENTS[label]:
        x0, y0, x1, y1 = _SEGMENTS[seg]
        draw.line((x0 + dx, y0 + dy, x1 + dx, y1 + dy), fill=255, width=width)
    return np.asarray(img, dtype=np.uint8).copy()


def _make_png(path, array_or_label, mode: str = "L", black_on_white: bool = False,
              transparent_background: bool = False, size: tuple[int, int] | None = None) -> Path:
    """Save a digit as an image file and return its Path (parents are created).

    array_or_label: a 2-D uint8 array (white digit on black), or a label 0-9 drawn with digit_image.
    mode: 'L', 'RGB', 'RGBA', 'P', ... (Pillow mode of the saved image).
    black_on_white: invert first (paper-like scan).
    transparent_background: only for 'RGBA': black ink on a fully transparent canvas
        (the alpha channel carries the digit), as a paint program exports it.
    size: resize to (w, h) before saving (e.g. (30, 30) for a not-28x28 image).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = digit_image(array_or_label) if isinstance(array_or_label, (int, np.integer)) else np.asarray(array_or_label)
    arr = arr.astype(np.uint8)
    if black_on_white:
        arr = 255 - arr
    img = Image.fromarray(arr, mode="L")
    if size is not None:
        img = img.resize(size, Image.BILINEAR)
    if transparent_background:
        if mode != "RGBA" or black_on_white:
            raise ValueError("transparent_background is for mode='RGBA' with the digit as alpha")
        ink = np.asarray(img, dtype=np.uint8)
        rgba = np.zeros(ink.shape + (4,), dtype=np.uint8)  # black ink
        rgba[..., 3] = ink  # opaque where the digit is, transparent elsewhere
        img = Image.fromarray(rgba, mode="RGBA")
    elif mode != "L":
        img = img.convert(mode)
    img.save(path, format="PNG")
    return path


def _write_lines(path, lines, newline: str = "\n") -> Path:
    """Write lines (str) joined and terminated by `newline` as UTF-8; parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + newline for line in lines).encode("utf-8"))
    return path


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def make_png():
    """make_png(path, array_or_label, mode='L', black_on_white=False, transparent_background=False, size=None) -> Path."""
    return _make_png


@pytest.fixture
def write_lines():
    """write_lines(path, lines, newline='\\n') -> Path: write an index (or any text) file."""
    return _write_lines


@pytest.fixture
def write_idx():
    """write_idx(path, uint8 array) -> Path: an IDX file, gzip-compressed when the name ends in .gz."""
    return _write_idx


@pytest.fixture(scope="session")
def tiny_counts() -> dict[str, int]:
    """Samples per split in tiny_mnist_raw / tiny_data (TINY_COUNTS[split] // 10 of each label)."""
    return dict(TINY_COUNTS)


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST raw folder, or skip the test when it is absent."""
    found = find_real_mnist()
    if found is None:
        pytest.skip("real MNIST not found ($MNIST_DIR or ../shared/data/MNIST/raw)")
    return found


def _tiny_split_from_real(raw: Path, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name, _ = mnist.SPLITS[split]
    images = mnist.read_idx(mnist.find_idx_file(raw, images_name))
    labels = mnist.read_idx(mnist.find_idx_file(raw, labels_name))
    per_label = count // 10
    chosen = np.sort(np.concatenate([np.flatnonzero(labels == d)[:per_label] for d in range(10)]))
    return images[chosen].copy(), labels[chosen].copy()


def _tiny_split_synthetic(split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0 if split == "train" else 1)
    labels = np.tile(np.arange(10, dtype=np.uint8), count // 10)
    rng.shuffle(labels)
    images = np.stack([digit_image(int(l), rng) for l in labels])
    noise = rng.integers(0, 30, size=images.shape)
    images = np.clip(images.astype(np.int16) - noise, 0, 255).astype(np.uint8)  # less uniform strokes
    return images, labels


@pytest.fixture(scope="session")
def tiny_mnist_raw(tmp_path_factory) -> Path:
    """A folder with MNIST's four .gz IDX files holding TINY_COUNTS images (all labels in each split)."""
    out = tmp_path_factory.mktemp("tiny_mnist_raw")
    real = None if os.environ.get("TESTS_SYNTHETIC_MNIST") else find_real_mnist()
    for split, count in TINY_COUNTS.items():
        if real is not None:
            images, labels = _tiny_split_from_real(real, split, count)
        else:
            images, labels = _tiny_split_synthetic(split, count)
        assert images.shape == (count, 28, 28) and set(labels.tolist()) == set(range(10))
        images_name, labels_name, _ = mnist.SPLITS[split]
        _write_idx(out / f"{images_name}.gz", images)
        _write_idx(out / f"{labels_name}.gz", labels)
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_mnist_raw) -> Path:
    """A data dir prepared from tiny_mnist_raw by mnist.prepare_mnist: mnist/{train,test}/<label>/<n>.png,
    train.txt and test.txt (and their warmed decoded-array caches). Shared: don't modify it."""
    data_dir = tmp_path_factory.mktemp("tiny_data")
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw))
    for split, count in TINY_COUNTS.items():
        assert (data_dir / f"{split}.txt").is_file()
    return data_dir
