"""mnist.py: reading IDX files and preparing MNIST as PNG files + index files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import dataset
import mnist
from dataset import DataError, IndexDataset, read_index

REPO_ROOT = Path(__file__).resolve().parent.parent


def idx_arrays(raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name, _ = mnist.SPLITS[split]
    return (mnist.read_idx(mnist.find_idx_file(raw, images_name)),
            mnist.read_idx(mnist.find_idx_file(raw, labels_name)))


@pytest.fixture
def tiny_splits(monkeypatch, tiny_counts):
    """The tiny counts per split; $MNIST_DIR unset so nothing falls back to the real MNIST."""
    monkeypatch.delenv("MNIST_DIR", raising=False)
    return tiny_counts


# ---------------------------------------------------------------- read_idx

@pytest.mark.parametrize("name", ["x-idx3-ubyte.gz", "x-idx3-ubyte"])
def test_read_idx_roundtrip(tmp_path, write_idx, name):
    arr = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    got = mnist.read_idx(write_idx(tmp_path / name, arr))
    assert got.dtype == np.uint8 and got.shape == (7, 28, 28)
    assert np.array_equal(got, arr)


def test_read_idx_labels(tiny_mnist_raw, tiny_counts):
    labels = mnist.read_idx(tiny_mnist_raw / "train-labels-idx1-ubyte.gz")
    n = tiny_counts["train"]
    assert labels.shape == (n,) and np.array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)


def _bad_magic(p: Path):
    p.write_bytes(b"\x1f\x8b\x08\x03" + bytes(20))  # a gzip header in a file without .gz


def _wrong_dtype(p: Path):
    p.write_bytes(bytes([0, 0, 0x0D, 1]) + (4).to_bytes(4, "big") + bytes(16))  # float32 IDX


def _idx_bytes(shape) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape) + bytes(int(np.prod(shape)))


def _truncated_data(p: Path):
    p.write_bytes(_idx_bytes((5, 28, 28))[:-100])


def _truncated_header(p: Path):
    p.write_bytes(bytes([0, 0, 0x08, 3]) + (5).to_bytes(4, "big"))


def _too_long(p: Path):
    p.write_bytes(_idx_bytes((5,)) + b"\0")


def _empty(p: Path):
    p.write_bytes(b"")


@pytest.mark.parametrize("damage, words", [
    (_bad_magic, "magic"), (_wrong_dtype, "magic"), (_truncated_data, "promises"),
    (_truncated_header, "truncated"), (_too_long, "promises"), (_empty, "magic"),
])
def test_read_idx_bad_files(tmp_path, damage, words):
    p = tmp_path / "bad-idx3-ubyte"
    damage(p)
    with pytest.raises(DataError) as e:
        mnist.read_idx(p)
    msg = str(e.value)
    assert str(p) in msg and words in msg and "\n" not in msg


def test_read_idx_truncated_gzip(tmp_path, write_idx):
    p = write_idx(tmp_path / "cut-idx3-ubyte.gz", np.zeros((50, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(DataError) as e:
        mnist.read_idx(p)
    assert str(p) in str(e.value)


def test_read_idx_not_gzip_but_named_gz(tmp_path):
    p = tmp_path / "plain-idx1-ubyte.gz"
    p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(DataError) as e:
        mnist.read_idx(p)
    assert str(p) in str(e.value)


# ---------------------------------------------------------------- prepare on the tiny raw data

def test_prepare_writes_tree_and_indexes(tmp_path, tiny_mnist_raw, tiny_splits, capsys):
    data_dir = tmp_path / "data"
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw))
    out = capsys.readouterr().out
    assert "preparing MNIST from" in out and str(tiny_mnist_raw) in out
    split_paths = {}
    for split, count in tiny_splits.items():
        images, labels = idx_arrays(tiny_mnist_raw, split)
        index = data_dir / f"{split}.txt"
        assert f"{split}: {count} images" in out
        assert f"per label {np.bincount(labels, minlength=10).tolist()}" in out
        samples = read_index(index)
        assert len(samples) == count
        assert [s.label for s in samples] == labels.tolist()
        for n, s in enumerate(samples):
            assert Path(s.path) == data_dir / "mnist" / split / str(labels[n]) / f"{n:05d}.png"
        pngs = sorted((data_dir / "mnist" / split).rglob("*.png"))
        assert len(pngs) == count
        ds = IndexDataset(index)
        assert torch_equal(ds.images, images) and ds.labels.tolist() == labels.tolist()
        split_paths[split] = {s.path for s in samples}
        assert dataset.cache_path(index, "auto").is_file()  # prepare warmed the cache
    assert not split_paths["train"] & split_paths["test"]


def torch_equal(images_tensor, images_array) -> bool:
    return np.array_equal(images_tensor.numpy(), images_array)


def test_second_prepare_does_nothing(tmp_path, tiny_mnist_raw, tiny_splits, capsys, monkeypatch):
    data_dir = tmp_path / "data"
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw))
    mtimes = {s: (data_dir / f"{s}.txt").stat().st_mtime_ns for s in tiny_splits}
    png = data_dir / "mnist" / "test" / "7" / next(iter(sorted(os.listdir(data_dir / "mnist" / "test" / "7"))))
    png_mtime = png.stat().st_mtime_ns
    capsys.readouterr()
    monkeypatch.setattr(mnist, "write_split", lambda *a, **k: pytest.fail("write_split called again"))
    monkeypatch.setattr(dataset, "load_digit", lambda *a, **k: pytest.fail("cache not used"))
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw))
    assert "already prepared" in capsys.readouterr().out
    assert {s: (data_dir / f"{s}.txt").stat().st_mtime_ns for s in tiny_splits} == mtimes
    assert png.stat().st_mtime_ns == png_mtime


def test_prepare_force_rewrites(tmp_path, tiny_mnist_raw, tiny_splits, capsys):
    data_dir = tmp_path / "data"
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw))
    os.utime(data_dir / "train.txt", ns=(0, 0))
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw), force=True)
    assert (data_dir / "train.txt").stat().st_mtime_ns != 0
    assert "preparing MNIST" in capsys.readouterr().out


def test_prepare_killed_half_way_completes(tmp_path, tiny_mnist_raw, tiny_splits, capsys):
    data_dir = tmp_path / "data"
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw))
    train_mtime = (data_dir / "train.txt").stat().st_mtime_ns
    # State of a prepare killed while writing the test PNGs: no test.txt, a half-written PNG.
    (data_dir / "test.txt").unlink()
    victim = sorted((data_dir / "mnist" / "test").rglob("*.png"))[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw))
    out = capsys.readouterr().out
    assert f"test: {tiny_splits['test']} images" in out and "train:" not in out  # only the unfinished split is redone
    assert (data_dir / "train.txt").stat().st_mtime_ns == train_mtime
    images, labels = idx_arrays(tiny_mnist_raw, "test")
    ds = IndexDataset(data_dir / "test.txt", normalize="never", use_cache=False)
    assert torch_equal(ds.images, images) and ds.labels.tolist() == labels.tolist()


def test_prepare_with_a_missing_png_redoes_the_split(tmp_path, tiny_mnist_raw, tiny_splits):
    data_dir = tmp_path / "data"
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw))
    gone = Path(read_index(data_dir / "train.txt")[10].path)
    gone.unlink()
    mnist.prepare_mnist(data_dir, mnist_dir=str(tiny_mnist_raw))
    assert gone.is_file()
    assert len(IndexDataset(data_dir / "train.txt")) == tiny_splits["train"]


def test_mnist_dir_without_files(tmp_path, tiny_splits):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as e:
        mnist.prepare_mnist(tmp_path / "data", mnist_dir=str(empty))
    assert str(empty) in str(e.value) and "--mnist-dir" in str(e.value)
    assert not (tmp_path / "data" / "train.txt").exists()


def test_non_canonical_counts_warn(tmp_path, tiny_mnist_raw, tiny_splits, capsys):
    mnist.prepare_mnist(tmp_path / "data", mnist_dir=str(tiny_mnist_raw))
    err = capsys.readouterr().err
    assert f"train split has {tiny_splits['train']} images, not MNIST's 60000" in err
    assert f"test split has {tiny_splits['test']} images, not MNIST's 10000" in err


def test_label_over_9(tmp_path, tiny_mnist_raw, tiny_splits, write_idx):
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in tiny_mnist_raw.iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    labels = mnist.read_idx(raw / "train-labels-idx1-ubyte.gz").copy()
    labels[17] = 12
    write_idx(raw / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError) as e:
        mnist.prepare_mnist(tmp_path / "data", mnist_dir=str(raw))
    assert "train-labels-idx1-ubyte.gz" in str(e.value) and "12" in str(e.value)


def test_images_and_labels_disagree(tmp_path, tiny_mnist_raw, tiny_splits, write_idx):
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in tiny_mnist_raw.iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    labels = mnist.read_idx(raw / "t10k-labels-idx1-ubyte.gz")
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", labels[:-1])  # one label short
    with pytest.raises(DataError) as e:
        mnist.prepare_mnist(tmp_path / "data", mnist_dir=str(raw))
    assert str(raw) in str(e.value) and "test" in str(e.value)
    assert (tmp_path / "data" / "train.txt").is_file() and not (tmp_path / "data" / "test.txt").exists()


def test_cli_main_in_process(tmp_path, tiny_mnist_raw, tiny_splits, capsys):
    data_dir = tmp_path / "data"
    assert dataset.main(["prepare", "--mnist-dir", str(tiny_mnist_raw), "--data-dir", str(data_dir)]) == 0
    assert len(read_index(data_dir / "test.txt")) == tiny_splits["test"]
    capsys.readouterr()
    assert dataset.main(["prepare", "--mnist-dir", str(tmp_path), "--data-dir", str(tmp_path / "d2")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def run_cli(*args, cwd=REPO_ROOT):
    env = {k: v for k, v in os.environ.items() if k != "MNIST_DIR"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "dataset.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_subprocess_prepare(tmp_path, tiny_mnist_raw, tiny_counts):
    data_dir = tmp_path / "data"
    r = run_cli("prepare", "--mnist-dir", str(tiny_mnist_raw), "--data-dir", str(data_dir), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "preparing MNIST from" in r.stdout
    for split, count in tiny_counts.items():
        assert len(read_index(data_dir / f"{split}.txt")) == count
        assert dataset.cache_path(data_dir / f"{split}.txt", "auto").is_file()


def test_cli_subprocess_error(tmp_path):
    r = run_cli("prepare", "--mnist-dir", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere" in lines[0], r.stderr


# ---------------------------------------------------------------- the real MNIST, through the CLI

@pytest.fixture
def big_data_dir(tmp_path):
    """An empty folder for 70,000 PNGs, removed after the test.

    On a tmpfs (/dev/shm) when there is one: deleting 70,000 files from a disk mounted with
    `discard` takes minutes, which pytest's tmp_path retention would otherwise charge to a later run.
    """
    shm = Path("/dev/shm")
    parent = tmp_path
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * 2**30:
        parent = Path(tempfile.mkdtemp(prefix="test_mnist_real_", dir=shm))
    try:
        yield parent / "data"
    finally:
        shutil.rmtree(parent / "data", ignore_errors=True)
        if parent != tmp_path:
            shutil.rmtree(parent, ignore_errors=True)


def test_prepare_real_mnist_cli(tmp_path, real_mnist_dir, big_data_dir):
    data_dir = big_data_dir
    r = run_cli("prepare", "--mnist-dir", str(real_mnist_dir), "--data-dir", str(data_dir), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "train: 60000 images" in r.stdout and "test: 10000 images" in r.stdout
    all_paths = []
    for split, count in (("train", 60_000), ("test", 10_000)):
        images, labels = idx_arrays(real_mnist_dir, split)
        ds = IndexDataset(data_dir / f"{split}.txt")  # from the cache prepare warmed
        assert len(ds) == count
        assert np.array_equal(np.bincount(ds.labels.numpy(), minlength=10), np.bincount(labels, minlength=10))
        assert np.array_equal(ds.labels.numpy(), labels)
        assert np.array_equal(ds.images.numpy(), images)
        assert all(Path(p).parent.name == str(l) for p, l in zip(ds.paths[::997], labels[::997]))
        all_paths += ds.paths
    assert len(set(all_paths)) == 70_000  # train and test disjoint
    # the PNGs themselves hold the pixels (not only the cache)
    sample = read_index(data_dir / "test.txt")[1234]
    assert np.array_equal(dataset.load_digit(sample.path, sample.where, "never"), idx_arrays(real_mnist_dir, "test")[0][1234])
    r2 = run_cli("prepare", "--mnist-dir", str(real_mnist_dir), "--data-dir", str(data_dir))
    assert r2.returncode == 0 and "nothing to do" in r2.stdout
