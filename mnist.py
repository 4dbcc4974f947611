"""MNIST's raw IDX files -> data/mnist/{train,test}/<label>/<n>.png and the index files
data/train.txt (60,000 lines) and data/test.txt (10,000 lines), MNIST's official,
disjoint split. Run through `python dataset.py prepare`; the other scripts call
`ensure_mnist()` so a fresh clone needs no extra step.
"""
from __future__ import annotations

import gzip
import os
import struct
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dataset import DATA_DIR, DataError, IndexDataset, read_index, warn, write_index

SPLITS = {  # split -> (images file, labels file, canonical count)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
IDX_DTYPE = {0x08: np.uint8}


def find_idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def has_mnist(folder: Path) -> bool:
    return all(find_idx_file(folder, n) for images, labels, _ in SPLITS.values() for n in (images, labels))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or not): magic 0x0000TTNN, NN dims of big-endian uint32, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPE:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"{path}: IDX header promises {expected} bytes of data, file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def locate_mnist(mnist_dir: str | None, data_dir: Path) -> Path:
    """--mnist-dir, else $MNIST_DIR, else data/MNIST/raw, else download there with torchvision."""
    for origin, folder in (("--mnist-dir", mnist_dir), ("MNIST_DIR", os.environ.get("MNIST_DIR"))):
        if folder:
            if not has_mnist(Path(folder)):
                raise DataError(f"{folder} (from {origin}): MNIST's four IDX files not found there")
            return Path(folder)
    default = data_dir / "MNIST" / "raw"
    if has_mnist(default):
        return default
    print(f"MNIST not found locally; downloading it with torchvision into {data_dir / 'MNIST'}")
    from torchvision.datasets import MNIST

    try:
        for train in (True, False):
            MNIST(root=str(data_dir), train=train, download=True)
    except Exception as e:
        raise DataError(f"cannot download MNIST ({e}); put its four IDX files in a folder "
                        "and pass --mnist-dir or set MNIST_DIR") from None
    return default


def index_is_complete(index_file: Path) -> bool:
    """The index is written last, atomically: if it parses and its images exist, the split is done."""
    if not index_file.is_file():
        return False
    try:
        samples = read_index(index_file)
    except DataError:
        return False
    return all(os.path.isfile(s.path) for s in samples)


def write_split(raw: Path, data_dir: Path, split: str) -> None:
    images_name, labels_name, canonical = SPLITS[split]
    images = read_idx(find_idx_file(raw, images_name))
    labels = read_idx(find_idx_file(raw, labels_name))
    count = len(labels)
    if images.shape != (count, 28, 28) or labels.shape != (count,):
        raise DataError(f"{raw}: {split} IDX files hold images of shape {images.shape} and labels of shape "
                        f"{labels.shape}, expected ({count}, 28, 28) and ({count},)")
    if count != canonical:
        warn(f"{raw}: {split} split has {count} images, not MNIST's {canonical}")
    if labels.max() > 9:
        raise DataError(f"{find_idx_file(raw, labels_name)}: label {labels.max()} outside 0-9")
    for d in range(10):
        (data_dir / "mnist" / split / str(d)).mkdir(parents=True, exist_ok=True)
    rows = []
    for n, (img, label) in enumerate(zip(images, labels)):
        rel = f"mnist/{split}/{label}/{n:05d}.png"
        # Rewritten every time: a PNG left half-written by a killed prepare is never trusted.
        Image.fromarray(img).save(data_dir / rel, compress_level=1)
        rows.append((rel, int(label)))
    counts = np.bincount(labels, minlength=10)
    # The index is written last and atomically: its presence means the split is complete.
    write_index(data_dir / f"{split}.txt", rows,
                header=f"MNIST {split} split, {count} images, written by `python dataset.py prepare` from {raw}")
    print(f"  {split}: {count} images, per label {counts.tolist()} -> {data_dir / f'{split}.txt'}")


def prepare_mnist(data_dir=DATA_DIR, mnist_dir: str | None = None, force: bool = False) -> None:
    data_dir = Path(data_dir)
    todo = [s for s in SPLITS if force or not index_is_complete(data_dir / f"{s}.txt")]
    if not todo:
        print(f"MNIST already prepared in {data_dir} (train.txt, test.txt); nothing to do")
    else:
        raw = locate_mnist(mnist_dir, data_dir)
        start = time.time()
        print(f"preparing MNIST from {raw}")
        for split in todo:
            (data_dir / f"{split}.txt").unlink(missing_ok=True)  # no stale index while its images change
            write_split(raw, data_dir, split)
        print(f"  done in {time.time() - start:.1f}s")
    for split in SPLITS:  # warm the decoded-array caches so training starts straight from memory
        IndexDataset(data_dir / f"{split}.txt")


def ensure_mnist(data_dir=DATA_DIR, mnist_dir: str | None = None) -> None:
    """Prepare MNIST unless data/train.txt and data/test.txt already exist."""
    data_dir = Path(data_dir)
    if not all((data_dir / f"{s}.txt").is_file() for s in SPLITS):
        prepare_mnist(data_dir, mnist_dir)
