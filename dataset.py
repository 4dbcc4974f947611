"""Index files of digit images, and the Dataset that serves them from one decoded array.

An index file lists one sample a line, in either form:

    mnist/train/5/00000.png,5          # path,label (the original project's format)
    my digits/three (2).png 3          # path label: the label is the last token

Relative paths resolve against the index file's folder. Blank lines and lines
starting with '#' are skipped.

`IndexDataset` decodes every listed image once into a uint8 array (N x 28 x 28,
white digit on black, MNIST's convention) and caches it on disk beside the index,
so later processes load it in a fraction of a second. Training slices batches from
`dataset.images` directly; `__getitem__` is there for ordinary DataLoader use.

CLI:  python dataset.py prepare               # MNIST -> data/mnist/*.png + data/{train,test}.txt
      python dataset.py import-handwritten SRC --out data/handwritten/NAME
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
DATA_DIR = Path(__file__).resolve().parent / "data"
CACHE_VERSION = 1
MAX_PIXELS = 50_000_000  # refuse larger images before decoding them: bounded memory
NORMALIZE_MODES = ("auto", "always", "never")


class DataError(ValueError):
    """Bad input data; the message is one line naming the file (and line)."""


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file and os.replace, so readers never see a partial file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # disk full, read-only folder, ...: one line naming the file
        raise DataError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------- index files

@dataclass(frozen=True)
class Sample:
    path: str  # absolute, normalised
    label: int
    where: str  # "index.txt:LINE", for error messages


def parse_label(token: str, where: str) -> int:
    token = token.strip()
    if not (token.isascii() and token.isdecimal() and 0 <= int(token) <= 9):
        raise DataError(f"{where}: label {token!r} is not a digit 0-9")
    return int(token)


def parse_index_line(line: str, where: str) -> tuple[str, int]:
    """'path,label' or 'path label' -> (path, label). A path may hold spaces, or commas in the space form."""
    head, comma, tail = line.rpartition(",")
    if comma and tail.strip() and not any(c.isspace() for c in tail.strip()):
        path, label = head.strip(), tail
    else:
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise DataError(f"{where}: expected 'path,label' or 'path label', got {line.strip()!r}")
        path, label = parts
    if not path:
        raise DataError(f"{where}: missing image path in {line.strip()!r}")
    return path, parse_label(label, where)


def read_index(index_file: str | os.PathLike) -> list[Sample]:
    """Parse an index file. Duplicate lines are skipped with a warning; a path listed
    with two different labels, like every other malformed line, is an error."""
    index_file = Path(index_file)
    try:
        raw = index_file.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{index_file}: index file not found") from None
    except OSError as e:
        raise DataError(f"{index_file}: cannot read index file: {e.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line_no = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{index_file}:{line_no}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
    base = str(index_file.resolve().parent)
    samples: list[Sample] = []
    seen: dict[str, tuple[int, int]] = {}  # path -> (label, line)
    duplicates = 0
    for line_no, line in enumerate(text.splitlines(), 1):  # splitlines: \n, \r\n and \r alike
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{index_file}:{line_no}"
        rel, label = parse_index_line(stripped, where)
        path = os.path.normpath(os.path.join(base, rel))  # str, not Path: 3x faster on 60,000 lines
        if path in seen:
            first_label, first_line = seen[path]
            if first_label != label:
                raise DataError(f"{where}: {rel!r} has label {label} here but {first_label} on line {first_line}")
            duplicates += 1
            continue
        seen[path] = (label, line_no)
        samples.append(Sample(path, label, where))
    if not samples:
        raise DataError(f"{index_file}: no samples (the index is empty or holds only comments)")
    if duplicates:
        warn(f"{index_file}: skipped {duplicates} duplicate line(s)")
    return samples


def write_index(index_file: Path, samples: list[tuple[str, int]], header: str = "") -> None:
    """Write 'path,label' lines (paths relative to the index folder) atomically."""
    lines = [f"# {h}" for h in header.splitlines()] + [f"{p},{label}" for p, label in samples]
    atomic_write_text(Path(index_file), "\n".join(lines) + "\n")


# ---------------------------------------------------------------- decoding one image

def open_image(path: str, where: str) -> Image.Image:
    """Open and fully decode an image, turning every failure into a one-line DataError."""
    try:
        with warnings.catch_warnings():  # our own size limit below replaces PIL's bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise DataError(f"{where}: {path} is {w}x{h}, over the {MAX_PIXELS // 1_000_000}-megapixel limit; "
                            "shrink it first")
        if w < 1 or h < 1:
            raise DataError(f"{where}: {path} is empty ({w}x{h})")
        img.load()
        return img
    except FileNotFoundError:
        raise DataError(f"{where}: image not found: {path}") from None
    except UnidentifiedImageError:
        raise DataError(f"{where}: not an image file: {path}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{where}: cannot decode {path}: {e}") from None


def to_white_on_black(img: Image.Image) -> np.ndarray:
    """Any mode -> uint8 grayscale array with the digit light on a dark background.

    Transparency is flattened onto the colour that contrasts with the ink, so a black
    stroke on a transparent canvas (a paint program's export) stays visible. The
    background is judged from the border: a light border (paper) is inverted.
    """
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        lum = np.asarray(rgba.convert("L"), dtype=np.float32)
        if alpha.min() < 1.0:
            opaque = alpha > 0.5
            ink_is_dark = opaque.any() and lum[opaque].mean() < 128
            backdrop = 255.0 if ink_is_dark else 0.0
            lum = lum * alpha + backdrop * (1.0 - alpha)
        gray = np.clip(lum + 0.5, 0, 255).astype(np.uint8)
    elif img.mode.startswith(("I", "F")):  # 16-bit scans, float TIFFs: scale into 0..255, don't clip
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max() > 255 else 255.0
        gray = np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
    else:
        gray = np.asarray(img.convert("L"), dtype=np.uint8)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:
        gray = 255 - gray
    return np.ascontiguousarray(gray)


def load_digit(path: str, where: str, normalize: str = "auto") -> np.ndarray:
    """Decode one image file into a 28x28 uint8 MNIST-style array.

    normalize: 'auto' applies the handwriting normalisation to images that are not
    28x28 and takes 28x28 ones as they are; 'always' normalises every image;
    'never' refuses anything that is not 28x28.
    """
    img = open_image(path, where)
    if normalize == "always" or (normalize == "auto" and img.size != (28, 28)):
        from handwriting import normalize_digit  # imported here: plain MNIST loading never needs it

        return normalize_digit(img, f"{where}: {path}")
    if img.size != (28, 28):
        raise DataError(f"{where}: {path} is {img.size[0]}x{img.size[1]}, expected 28x28 "
                        "(use normalize='auto' to fit other sizes)")
    return to_white_on_black(img)


# ---------------------------------------------------------------- the decoded-array cache

def cache_path(index_file: Path, normalize: str) -> Path:
    return index_file.resolve().parent / ".cache" / f"{index_file.name}.{normalize}.npz"


def cache_key(index_file: Path, samples: list[Sample], normalize: str) -> str:
    """Changes whenever the index text, the mode, or any image's size or mtime changes."""
    h = hashlib.sha256(f"v{CACHE_VERSION} {normalize}\n".encode())
    h.update(Path(index_file).read_bytes())
    for s in samples:
        try:
            st = os.stat(s.path)
        except FileNotFoundError:
            raise DataError(f"{s.where}: image not found: {s.path}") from None
        h.update(f"{s.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def content_digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).astype(np.int64).tobytes())
    return h.hexdigest()


def load_cache(path: Path, key: str, n: int):
    """Return (images, labels, digest) if the cache at `path` is for `key` and intact, else None."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            images, labels, digest = z["images"], z["labels"], str(z["digest"])
        if images.shape != (n, 28, 28) or labels.shape != (n,) or content_digest(images, labels) != digest:
            raise ValueError("contents do not match their checksum")
        return images, labels, digest
    except Exception as e:  # a damaged cache is never used: report and rebuild
        warn(f"{path}: damaged dataset cache ({type(e).__name__}: {e}); rebuilding it")
        return None


def save_cache(path: Path, key: str, images: np.ndarray, labels: np.ndarray, digest: str) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), images=images, labels=labels,
                         digest=np.array(digest))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    except OSError as e:  # a read-only data folder still works, only slower next time
        warn(f"{path}: cannot write dataset cache ({e.strerror}); continuing without it")


def decode_index(index_file: str | os.PathLike, normalize: str = "auto", use_cache: bool = True):
    """(samples, images uint8 [N,28,28], labels int64 [N], content digest) for one index file, cached on disk."""
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, not {normalize!r}")
    index_file = Path(index_file)
    samples = read_index(index_file)
    key = cache_key(index_file, samples, normalize)
    cpath = cache_path(index_file, normalize)
    cached = load_cache(cpath, key, len(samples)) if use_cache else None
    if cached is not None:
        return (samples, *cached)
    images = np.empty((len(samples), 28, 28), dtype=np.uint8)
    for i, s in enumerate(samples):
        images[i] = load_digit(s.path, s.where, normalize)
    labels = np.array([s.label for s in samples], dtype=np.int64)
    digest = content_digest(images, labels)
    if use_cache:
        save_cache(cpath, key, images, labels, digest)
    return samples, images, labels, digest


# ---------------------------------------------------------------- the Dataset

def to_model_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,28,28] -> float [B,1,28,28] normalised with MNIST's mean and std."""
    return ((images_uint8.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


class IndexDataset(Dataset):
    """The samples of one or more index files, decoded once into memory.

    Attributes: `images` (uint8 tensor [N,28,28]), `labels` (int64 tensor [N]),
    `paths` (list of absolute path strings), `sources` (the index file each sample came from),
    `fingerprint` (sha256 over each index's decoded pixels and labels).
    """

    def __init__(self, index_files, normalize: str = "auto", use_cache: bool = True):
        if isinstance(index_files, (str, os.PathLike)):
            index_files = [index_files]
        self.index_files = [Path(f) for f in index_files]
        if not self.index_files:
            raise DataError("no index file given")
        parts = [decode_index(f, normalize, use_cache) for f in self.index_files]
        self.samples = [s for p in parts for s in p[0]]
        self.paths = [s.path for s in self.samples]
        self.sources = [f for f, p in zip(self.index_files, parts) for _ in p[0]]
        self.images = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        self.labels = torch.from_numpy(np.concatenate([p[2] for p in parts]))
        self.fingerprint = hashlib.sha256(" ".join(p[3] for p in parts).encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return to_model_input(self.images[i].unsqueeze(0))[0], int(self.labels[i])


# ---------------------------------------------------------------- CLI

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Prepare MNIST as PNG files + index files, or import your own digits.")
    sub = p.add_subparsers(dest="command", required=True)

    pp = sub.add_parser("prepare", help="write data/mnist/{train,test}/<label>/<n>.png and data/{train,test}.txt")
    pp.add_argument("--mnist-dir", help="folder with MNIST's four IDX files (gzip or not); "
                    "default: $MNIST_DIR, else data/MNIST/raw, else download with torchvision")
    pp.add_argument("--data-dir", default=str(DATA_DIR), help="where to write images and index files (default: %(default)s)")
    pp.add_argument("--force", action="store_true", help="rewrite everything even when already complete")

    ph = sub.add_parser("import-handwritten", help="normalise a folder of your own digit images into an index")
    ph.add_argument("src", help="folder laid out <label>/<image> or holding files named <label>_<anything>.<ext>")
    ph.add_argument("--out", required=True, help="output set, e.g. data/handwritten/mine -> "
                    "data/handwritten/mine/*.png and data/handwritten/mine.txt")
    ph.add_argument("--force", action="store_true", help="replace an existing set of that name")

    args = p.parse_args(argv)
    try:
        if args.command == "prepare":
            from mnist import prepare_mnist

            prepare_mnist(args.data_dir, args.mnist_dir, force=args.force)
        else:
            from handwriting import import_handwritten

            import_handwritten(args.src, args.out, force=args.force)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run main() from the importable module, not __main__: mnist.py and handwriting.py raise
    # dataset.DataError, which a second copy of this file loaded as __main__ would not catch.
    import dataset

    sys.exit(dataset.main())
