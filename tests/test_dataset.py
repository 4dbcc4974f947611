"""dataset.py: index files, image decoding, the decoded-array cache, IndexDataset."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dataset
from dataset import DataError, IndexDataset, read_index


def digit(label: int = 3) -> np.ndarray:
    """A white-on-black 28x28 digit with a unique pixel pattern per label."""
    arr = np.zeros((28, 28), dtype=np.uint8)
    arr[6:22, 12:16] = 255
    arr[6:6 + label + 1, 8:20] = 180
    return arr


@pytest.fixture
def folder(tmp_path, make_png):
    """tmp_path with img/a.png (label 1), img/b.png (2), img/00001 (2).png (3)."""
    make_png(tmp_path / "img" / "a.png", digit(1))
    make_png(tmp_path / "img" / "b.png", digit(2))
    make_png(tmp_path / "img" / "00001 (2).png", digit(3))
    return tmp_path


def check_error(excinfo, index_file: Path, line: int | None):
    msg = str(excinfo.value)
    assert "\n" not in msg
    expected = f"{index_file}:{line}" if line is not None else str(index_file)
    assert expected in msg, msg
    return msg


# ---------------------------------------------------------------- index formats

@pytest.mark.parametrize("sep", [",", " "])
def test_both_formats_and_odd_file_names(folder, write_lines, sep):
    idx = write_lines(folder / "index.txt", [f"img/a.png{sep}1", f"img/00001 (2).png{sep}3"])
    samples = read_index(idx)
    assert [s.label for s in samples] == [1, 3]
    assert samples[1].path == str(folder / "img" / "00001 (2).png")
    ds = IndexDataset(idx, normalize="never")
    assert torch.equal(ds.images[1], torch.from_numpy(digit(3)))
    assert ds.labels.tolist() == [1, 3]


def test_mixed_formats_comments_blank_lines_and_spaces(folder, write_lines):
    idx = write_lines(folder / "index.txt", [
        "# a comment", "", "   ", "img/a.png,1", "  # indented comment",
        "img/00001 (2).png 3", "img/b.png , 2", "",
    ])
    samples = read_index(idx)
    assert [(Path(s.path).name, s.label) for s in samples] == [("a.png", 1), ("00001 (2).png", 3), ("b.png", 2)]
    assert samples[1].where == f"{idx}:6"


def test_crlf_line_endings(folder, write_lines):
    idx = write_lines(folder / "index.txt", ["# windows", "img/a.png,1", "img/00001 (2).png 3"], newline="\r\n")
    ds = IndexDataset(idx, normalize="never")
    assert ds.labels.tolist() == [1, 3]
    assert ds.paths == [str(folder / "img" / "a.png"), str(folder / "img" / "00001 (2).png")]


def test_relative_paths_resolve_against_index_folder(folder, write_lines, tmp_path_factory, monkeypatch):
    write_lines(folder / "index.txt", ["img/a.png,1", "./img/../img/b.png,2"])
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "img").mkdir()  # a decoy: must not be used
    monkeypatch.chdir(elsewhere)
    rel_index = os.path.relpath(folder / "index.txt", elsewhere)  # the index itself given relative to the cwd
    ds = IndexDataset(rel_index, normalize="never")
    assert ds.paths == [str(folder / "img" / "a.png"), str(folder / "img" / "b.png")]
    assert all(os.path.isabs(p) for p in ds.paths)
    assert torch.equal(ds.images[1], torch.from_numpy(digit(2)))


def test_absolute_paths(folder, write_lines, tmp_path_factory):
    other = tmp_path_factory.mktemp("index_elsewhere")
    idx = write_lines(other / "index.txt", [f"{folder / 'img' / 'b.png'},2", f"{folder / 'img' / '00001 (2).png'} 3"])
    ds = IndexDataset(idx, normalize="never")
    assert ds.labels.tolist() == [2, 3]
    assert torch.equal(ds.images[0], torch.from_numpy(digit(2)))


# ---------------------------------------------------------------- bad input -> one-line DataError

@pytest.mark.parametrize("bad_line", ["img/a.png", "img/a.png,", "img/a.png,10", "img/a.png -1", "img/a.png,seven"])
def test_bad_lines(folder, write_lines, bad_line):
    idx = write_lines(folder / "index.txt", ["# header", "img/b.png,2", bad_line])
    with pytest.raises(DataError) as e:
        IndexDataset(idx)
    check_error(e, idx, 3)


def test_missing_image(folder, write_lines):
    idx = write_lines(folder / "index.txt", ["img/a.png,1", "img/nope.png,4"])
    with pytest.raises(DataError) as e:
        IndexDataset(idx)
    assert "not found" in check_error(e, idx, 2)


def test_truncated_png(folder, write_lines):
    data = (folder / "img" / "b.png").read_bytes()
    (folder / "img" / "cut.png").write_bytes(data[: len(data) // 2])
    idx = write_lines(folder / "index.txt", ["img/a.png,1", "img/b.png,2", "img/cut.png,2"])
    with pytest.raises(DataError) as e:
        IndexDataset(idx, normalize="never")
    assert "cut.png" in check_error(e, idx, 3)


def test_text_file_named_png(folder, write_lines):
    (folder / "img" / "notes.png").write_text("this is not an image\n")
    idx = write_lines(folder / "index.txt", ["img/notes.png,5"])
    with pytest.raises(DataError) as e:
        IndexDataset(idx)
    assert "not an image" in check_error(e, idx, 1)


@pytest.mark.parametrize("lines", [[], ["# only", "", "# comments"]])
def test_empty_index(folder, write_lines, lines):
    idx = write_lines(folder / "index.txt", lines)
    with pytest.raises(DataError) as e:
        IndexDataset(idx)
    assert "no samples" in check_error(e, idx, None)


def test_missing_index_file(tmp_path):
    with pytest.raises(DataError) as e:
        IndexDataset(tmp_path / "absent.txt")
    check_error(e, tmp_path / "absent.txt", None)


def test_non_utf8_index(folder):
    idx = folder / "index.txt"
    idx.write_bytes(b"img/a.png,1\nimg/b.png,2\nimg/caf\xe9.png,3\n")  # Latin-1 e-acute
    with pytest.raises(DataError) as e:
        IndexDataset(idx)
    assert "UTF-8" in check_error(e, idx, 3)


def test_utf8_names_and_bom(folder, make_png):
    make_png(folder / "img" / "café 七.png", digit(7))
    idx = folder / "index.txt"
    idx.write_bytes("\ufeffimg/café 七.png,7\n".encode("utf-8"))  # BOM as Notepad writes it
    ds = IndexDataset(idx, normalize="never")
    assert ds.labels.tolist() == [7]


def test_never_mode_rejects_other_sizes(folder, write_lines, make_png):
    make_png(folder / "img" / "big.png", digit(4), size=(30, 30))
    idx = write_lines(folder / "index.txt", ["img/a.png,1", "img/big.png,4"])
    with pytest.raises(DataError) as e:
        IndexDataset(idx, normalize="never")
    assert "30x30" in check_error(e, idx, 2)


def test_bad_normalize_mode(folder, write_lines):
    idx = write_lines(folder / "index.txt", ["img/a.png,1"])
    with pytest.raises(ValueError, match="normalize"):
        IndexDataset(idx, normalize="sometimes")


def test_conflicting_duplicate_is_an_error(folder, write_lines):
    idx = write_lines(folder / "index.txt", ["img/a.png,1", "img/b.png,2", "./img/a.png 7"])
    with pytest.raises(DataError) as e:
        IndexDataset(idx)
    msg = check_error(e, idx, 3)
    assert "line 1" in msg


def test_same_label_duplicates_skipped_with_warning(folder, write_lines, capsys):
    idx = write_lines(folder / "index.txt", ["img/a.png,1", "img/b.png,2", "img/a.png 1", "img/../img/b.png,2"])
    ds = IndexDataset(idx, normalize="never", use_cache=False)
    assert ds.labels.tolist() == [1, 2]
    err = capsys.readouterr().err
    assert "warning" in err and "2 duplicate" in err and str(idx) in err


def test_several_index_files(folder, write_lines, tmp_path_factory, make_png):
    other = tmp_path_factory.mktemp("second_set")
    make_png(other / "x.png", digit(9))
    first = write_lines(folder / "index.txt", ["img/a.png,1", "img/b.png,2"])
    second = write_lines(other / "mine.txt", ["x.png 9"])
    ds = IndexDataset([first, second], normalize="never")
    assert len(ds) == 3
    assert ds.labels.tolist() == [1, 2, 9]
    assert ds.sources == [first, first, second]
    assert ds.paths[2] == str(other / "x.png")
    assert torch.equal(ds.images[2], torch.from_numpy(digit(9)))
    assert ds.fingerprint != IndexDataset(first, normalize="never").fingerprint


def test_no_index_files():
    with pytest.raises(DataError):
        IndexDataset([])


# ---------------------------------------------------------------- colour modes and polarity

@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "1"])
@pytest.mark.parametrize("black_on_white", [False, True])
def test_modes_load_white_on_black(folder, make_png, write_lines, mode, black_on_white):
    arr = digit(5)
    if mode == "1":
        arr = np.where(arr > 0, 255, 0).astype(np.uint8)  # bilevel: only pure black/white survive
    make_png(folder / "m.png", arr, mode=mode, black_on_white=black_on_white)
    assert Image.open(folder / "m.png").mode == mode
    idx = write_lines(folder / "index.txt", ["m.png,5"])
    got = IndexDataset(idx, normalize="never").images[0].numpy()
    assert got[0, 0] == 0  # background dark
    assert np.abs(got.astype(int) - arr.astype(int)).max() <= 2  # same digit, white on black


def test_transparent_canvas_with_black_ink(folder, make_png, write_lines):
    make_png(folder / "t.png", digit(6), mode="RGBA", transparent_background=True)
    rgba = np.asarray(Image.open(folder / "t.png"))
    assert rgba[..., :3].max() == 0  # all pixels black: only alpha carries the digit
    idx = write_lines(folder / "index.txt", ["t.png,6"])
    got = IndexDataset(idx, normalize="never").images[0].numpy()
    assert np.abs(got.astype(int) - digit(6).astype(int)).max() <= 2


# ---------------------------------------------------------------- __getitem__ and fingerprint

def test_getitem(folder, write_lines):
    idx = write_lines(folder / "index.txt", ["img/a.png,1", "img/b.png,2"])
    ds = IndexDataset(idx, normalize="never")
    x, y = ds[1]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (1, 28, 28)
    assert type(y) is int and y == 2
    expected = (torch.from_numpy(digit(2)).float() / 255 - dataset.MNIST_MEAN) / dataset.MNIST_STD
    assert torch.allclose(x[0], expected)
    assert x.min().item() == pytest.approx(-dataset.MNIST_MEAN / dataset.MNIST_STD)
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    xb, yb = next(iter(loader))
    assert xb.shape == (2, 1, 28, 28) and yb.tolist() == [1, 2]


def test_getitem_negative_index(folder, write_lines):
    ds = IndexDataset(write_lines(folder / "index.txt", ["img/a.png,1", "img/b.png,2"]), normalize="never")
    assert ds[-1][1] == 2


@pytest.mark.parametrize("token", ["--5", "\u00b2", "+3", "3.0"])
def test_odd_label_tokens_give_data_error(folder, write_lines, token):
    idx = write_lines(folder / "index.txt", [f"img/a.png,{token}"])
    with pytest.raises(DataError) as e:
        read_index(idx)
    check_error(e, idx, 1)


def test_16_bit_grayscale_is_scaled_not_clipped(folder, write_lines):
    """A 16-bit scan (ink 10000, paper 60000) must keep its contrast, inverted to white on black."""
    arr = np.full((28, 28), 60000, dtype=np.uint16)
    arr[8:20, 12:16] = 10000
    Image.fromarray(arr).save(folder / "img" / "scan16.png")
    ds = IndexDataset(write_lines(folder / "index.txt", ["img/scan16.png,1"]), normalize="never")
    img = ds.images[0].numpy()
    assert img[10, 13] > 200 and img[0, 0] < 30


def test_fingerprint_tracks_labels_and_pixels(folder, write_lines, make_png):
    idx = write_lines(folder / "index.txt", ["img/a.png,1", "img/b.png,2"])
    base = IndexDataset(idx, normalize="never").fingerprint
    assert IndexDataset(idx, normalize="never").fingerprint == base  # stable (second load is from the cache)
    assert IndexDataset(idx, normalize="never", use_cache=False).fingerprint == base
    write_lines(idx, ["img/a.png,1", "img/b.png,8"])
    relabelled = IndexDataset(idx, normalize="never").fingerprint
    assert relabelled != base
    write_lines(idx, ["# only a comment changed", "img/a.png,1", "img/b.png,2"])
    assert IndexDataset(idx, normalize="never").fingerprint == base  # same pixels and labels


# ---------------------------------------------------------------- the on-disk cache

class CountingLoader:
    """Wraps dataset.load_digit and counts the images actually decoded."""

    def __init__(self, monkeypatch):
        self.calls = 0
        self.real = dataset.load_digit
        monkeypatch.setattr(dataset, "load_digit", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


def refuse_decoding(*args, **kwargs):
    raise AssertionError("load_digit called: the cache was not used")


@pytest.fixture
def cached(folder, write_lines):
    """(index, first dataset) with the cache already written."""
    idx = write_lines(folder / "index.txt", ["img/a.png,1", "img/b.png,2", "img/00001 (2).png,3"])
    ds = IndexDataset(idx, normalize="never")
    assert dataset.cache_path(idx, "never").is_file()
    assert dataset.cache_path(idx, "never").parent == folder / ".cache"
    return idx, ds


def test_cache_hit(cached, monkeypatch):
    idx, first = cached
    monkeypatch.setattr(dataset, "load_digit", refuse_decoding)
    again = IndexDataset(idx, normalize="never")
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.fingerprint == first.fingerprint
    with pytest.raises(AssertionError):  # the cache is per normalize mode
        IndexDataset(idx, normalize="always")


def test_use_cache_false_decodes(cached, monkeypatch):
    idx, first = cached
    counter = CountingLoader(monkeypatch)
    IndexDataset(idx, normalize="never", use_cache=False)
    assert counter.calls == 3


def test_cache_invalidated_by_index_text(cached, monkeypatch, write_lines):
    idx, _ = cached
    counter = CountingLoader(monkeypatch)
    write_lines(idx, ["# a new comment", "img/a.png,1", "img/b.png,2", "img/00001 (2).png,3"])
    IndexDataset(idx, normalize="never")
    assert counter.calls == 3
    IndexDataset(idx, normalize="never")
    assert counter.calls == 3  # rebuilt cache is used again


def test_cache_invalidated_by_touching_an_image(cached, monkeypatch, folder):
    idx, first = cached
    counter = CountingLoader(monkeypatch)
    img = folder / "img" / "b.png"
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = IndexDataset(idx, normalize="never")
    assert counter.calls == 3
    assert torch.equal(again.images, first.images)


def test_cache_invalidated_by_rewriting_an_image(cached, monkeypatch, folder, make_png):
    idx, first = cached
    counter = CountingLoader(monkeypatch)
    img = folder / "img" / "b.png"
    old_mtime = img.stat().st_mtime_ns
    make_png(img, digit(8))
    if img.stat().st_mtime_ns == old_mtime:  # coarse filesystem clock: make the rewrite visible
        os.utime(img, ns=(old_mtime, old_mtime + 1_000_000_000))
    again = IndexDataset(idx, normalize="never")
    assert counter.calls == 3
    assert torch.equal(again.images[1], torch.from_numpy(digit(8)))
    assert torch.equal(again.images[0], first.images[0])
    assert again.fingerprint != first.fingerprint


def images_member_offset(npz: Path) -> tuple[int, int]:
    """(offset, size) of images.npy's stored bytes inside the .npz (np.savez stores uncompressed)."""
    with zipfile.ZipFile(npz) as z:
        info = z.getinfo("images.npy")
    assert info.compress_type == zipfile.ZIP_STORED
    raw = npz.read_bytes()
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26: info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28: info.header_offset + 30], "little")
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def damage_truncate(npz: Path):
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])


def damage_flip_pixel_bytes(npz: Path):
    offset, size = images_member_offset(npz)
    data = bytearray(npz.read_bytes())
    for i in range(offset + size - 300, offset + size - 200):  # inside the pixel data, past the .npy header
        data[i] ^= 0xFF
    npz.write_bytes(bytes(data))


def damage_forge_contents(npz: Path):
    """A well-formed cache whose key matches but whose pixels disagree with the stored checksum."""
    with np.load(npz) as z:
        parts = {k: z[k] for k in z.files}
    parts["images"] = parts["images"].copy()
    parts["images"][0, 0, 0] ^= 0xFF
    with open(npz, "wb") as f:
        np.savez(f, **parts)


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip_pixel_bytes, damage_forge_contents])
def test_damaged_cache_is_rebuilt(cached, monkeypatch, capsys, damage):
    idx, first = cached
    cpath = dataset.cache_path(idx, "never")
    damage(cpath)
    capsys.readouterr()
    counter = CountingLoader(monkeypatch)
    again = IndexDataset(idx, normalize="never")
    err = capsys.readouterr().err
    assert "damaged dataset cache" in err and str(cpath) in err
    assert counter.calls == 3
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.fingerprint == first.fingerprint
    # the cache was rewritten: the next load uses it silently
    monkeypatch.setattr(dataset, "load_digit", refuse_decoding)
    IndexDataset(idx, normalize="never")
    assert capsys.readouterr().err == ""


def test_tiny_data_fixture_loads(tiny_data, tiny_counts):
    """The shared fixture is a valid prepared data dir: all labels present, 28x28 white-on-black digits."""
    train = IndexDataset(tiny_data / "train.txt")
    test = IndexDataset(tiny_data / "test.txt")
    assert len(train) == tiny_counts["train"] and len(test) == tiny_counts["test"]
    assert set(train.labels.tolist()) == set(range(10)) == set(test.labels.tolist())
    assert not set(train.paths) & set(test.paths)
    assert train.images[:, 0, :].float().mean() < 5  # dark top rows
    assert train.images.float().mean(dim=(1, 2)).min() > 5  # every image has some ink
