"""handwriting.py: MNIST-style normalisation of one digit image, and importing a folder of them.

Images are drawn here with PIL; conventions checked: white digit on black, longer side
of the bounding box 20 px (tolerance +-1 px, for anti-aliasing), intensity centre of
mass within half a pixel of (14, 14) in 0-based (row, column) pixel indices.
"""
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataset import DataError, IndexDataset, read_index  # noqa: E402
from handwriting import import_handwritten, normalize_digit  # noqa: E402

SEVEN = [[(0.0, 0.0), (1.0, 0.0), (0.35, 1.6)]]
FOUR = [[(0.5, 0.0), (0.0, 1.0), (1.0, 1.0)], [(0.8, 0.45), (0.8, 1.6)]]
FIVE = [[(0.05, 0.3), (0.0, 0.75), (0.5, 0.6), (0.9, 0.9), (0.85, 1.3), (0.4, 1.55), (0.0, 1.4)],
        [(0.15, 0.0), (0.95, 0.0)]]  # the top bar does not touch the rest


def drawing(size, strokes=SEVEN, at=(0.0, 0.0, 1.0), width=8, ink=0, paper=255):
    """Strokes (unit coordinates) scaled by at[2] and shifted to at[:2], on a plain canvas."""
    img = Image.new("L", size, paper)
    d = ImageDraw.Draw(img)
    x0, y0, s = at
    for stroke in strokes:
        d.line([(x0 + s * x, y0 + s * y) for x, y in stroke], fill=ink, width=width, joint="curve")
    return img


def com(a):
    ys, xs = np.indices(a.shape)
    a = a.astype(np.float64)
    return (ys * a).sum() / a.sum(), (xs * a).sum() / a.sum()


def box(a, level=0):
    ys, xs = np.nonzero(a > level)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def n_components(mask):
    """8-connected components, by flood fill (independent of handwriting's own labelling)."""
    seen, count = np.zeros_like(mask, dtype=bool), 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    q = (y + dy, x + dx)
                    if 0 <= q[0] < mask.shape[0] and 0 <= q[1] < mask.shape[1] and mask[q] and not seen[q]:
                        seen[q] = True
                        stack.append(q)
    return count


def check_mnist_like(a):
    assert a.shape == (28, 28) and a.dtype == np.uint8
    assert a.max() == 255
    cy, cx = com(a)
    assert abs(cy - 14) <= 0.5 + 1e-9 and abs(cx - 14) <= 0.5 + 1e-9, (cy, cx)
    assert max(box(a)) in (19, 20, 21), box(a)


# ---------------------------------------------------------------- normalize_digit

def test_off_centre_digit_is_centred_by_mass_and_fits_20px():
    img = drawing((400, 300), at=(20, 15, 80))  # a small 7 in the top-left corner
    src = 255 - np.asarray(img)
    assert com(src)[0] < 100 and com(src)[1] < 100  # far from the canvas centre to begin with
    out = normalize_digit(img, "seven")
    check_mnist_like(out)
    assert max(box(out)) == 20  # MNIST's 20-px box exactly, as in MNIST itself


def test_aspect_kept_for_a_wide_digit():
    out = normalize_digit(drawing((300, 300), [[(0, 0), (2.0, 0.0), (2.0, 0.7)]], at=(40, 100, 100)), "wide")
    h, w = box(out)
    assert w == 20 and 6 <= h <= 10  # about 20 * 0.7/2.0 = 7, plus the stroke's own thickness


def test_black_on_white_and_white_on_black_agree():
    bw = drawing((200, 260), at=(60, 40, 90))
    wb = Image.fromarray(255 - np.asarray(bw))
    a, b = normalize_digit(bw, "bw"), normalize_digit(wb, "wb")
    assert np.abs(a.astype(int) - b).max() <= 2


def test_large_noisy_unevenly_lit_photo_comes_out_clean():
    rng = np.random.default_rng(0)
    h, w = 2000, 1500
    yy, xx = np.mgrid[0:h, 0:w]
    paper = 240 - 90 * xx / w - 40 * yy / h  # light falls off across the sheet
    paper = paper - 60 / (1 + np.exp(-(np.minimum(xx - 1100, yy - 1400)) / 40))  # a soft shadow in a corner
    ink = np.asarray(drawing((w, h), FOUR, at=(500, 500, 500), width=25, ink=255, paper=0)) / 255.0
    photo = paper * (1 - 0.8 * ink) + rng.normal(0, 8, (h, w))  # ink reflects a fifth of the light
    out = normalize_digit(Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)), "photo.jpg")
    clean = normalize_digit(drawing((w, h), FOUR, at=(500, 500, 500), width=25), "clean")
    check_mnist_like(out)
    near = np.zeros_like(clean, dtype=bool)  # the clean digit, grown by one pixel
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(np.roll(clean > 0, dy, 0), dx, 1)
    assert out[~near].max() <= 30  # no noise, no shadow: the background is black
    overlap = ((out > 127) & (clean > 127)).sum() / ((out > 127) | (clean > 127)).sum()
    assert overlap > 0.7


def test_transparent_rgba_with_black_strokes():
    mask = drawing((240, 240), at=(50, 30, 100), ink=255, paper=0)
    rgba = Image.merge("RGBA", (*[Image.new("L", mask.size, 0)] * 3, mask))  # black ink, clear background
    out = normalize_digit(rgba, "paint.png")
    check_mnist_like(out)
    reference = normalize_digit(drawing((240, 240), at=(50, 30, 100)), "ref")
    assert np.abs(out.astype(int) - reference).max() <= 2


def test_thin_mouse_drawing_survives():
    img = drawing((28, 28), [[(0, 0), (10, 0), (4, 18)]], at=(9, 4, 1.0), width=1)
    assert (np.asarray(img) < 128).sum() < 40  # a 1-px stroke
    out = normalize_digit(img, "mouse.png")
    check_mnist_like(out)
    assert n_components(out > 127) == 1  # still one unbroken stroke
    # Thickened towards MNIST's stroke (2 px core): ink mass in MNIST's range (about 60-150 full pixels).
    assert 40 < out.sum() / 255 < 150


def test_speck_far_away_is_dropped_but_a_detached_stroke_is_kept():
    clean = drawing((400, 400), FIVE, at=(150, 100, 150), width=10)
    dirty = clean.copy()
    ImageDraw.Draw(dirty).ellipse([360, 20, 372, 32], fill=0)  # a speck of dirt
    a, b = normalize_digit(clean, "clean"), normalize_digit(dirty, "dirty")
    assert np.array_equal(a, b)
    assert n_components(a > 127) == 2  # the five's separate top bar is still there ...
    assert a[: np.nonzero(a)[0].min() + 2].sum() > 255 * 8  # ... at the top, full length


@pytest.mark.parametrize("img", [
    Image.new("L", (100, 80), 255),
    Image.new("RGB", (50, 50), (120, 120, 120)),
    Image.fromarray(np.random.default_rng(1).normal(200, 6, (300, 300)).clip(0, 255).astype(np.uint8)),
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)),
], ids=["white", "grey", "noise", "transparent"])
def test_blank_image_is_refused(img):
    with pytest.raises(DataError) as e:
        normalize_digit(img, "blank.png")
    assert str(e.value) == "blank.png: blank image, no digit found"


def test_tiny_image_is_refused():
    img = Image.new("L", (7, 6), 255)
    img.putpixel((3, 3), 0)
    with pytest.raises(DataError) as e:
        normalize_digit(img, "dir/tiny.png")
    assert str(e.value).startswith("dir/tiny.png: ") and "7x6" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- import_handwritten

def save_digit(path: Path, strokes=SEVEN, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    drawing((120, 150), strokes, at=(25, 15, 60)).save(path, format=fmt)


def test_import_folder_layout(tmp_path, capsys):
    src = tmp_path / "mine_src"
    save_digit(src / "7" / "a.png")
    save_digit(src / "7" / "b.jpg", fmt="JPEG")
    save_digit(src / "4" / "c.bmp", FOUR, fmt="BMP")
    (src / "4" / "notes.png").write_text("not really a picture")
    Image.new("L", (90, 90), 255).save(src / "4" / "empty.png")
    save_digit(src / "x" / "d.png")
    save_digit(src / "12" / "e.png")
    out = tmp_path / "sets" / "mine"
    summary = import_handwritten(src, out)
    report = capsys.readouterr().out
    assert {k: v for k, v in summary.items() if k != "refused"} == {4: 1, 7: 2}
    refused = dict(summary["refused"])
    assert set(refused) == {"4/notes.png", "4/empty.png", "x/d.png", "12/e.png"}
    assert "not an image" in refused["4/notes.png"] and "blank" in refused["4/empty.png"]
    assert "bad label" in refused["x/d.png"] and "bad label" in refused["12/e.png"]
    assert "4/notes.png" in report and "12/e.png" in report and "2 taken" in report
    ds = IndexDataset(tmp_path / "sets" / "mine.txt", use_cache=False)
    assert sorted(ds.labels.tolist()) == [4, 7, 7] and tuple(ds.images.shape) == (3, 28, 28)
    assert sorted(p.name for p in out.iterdir()) == ["4_c.png", "7_a.png", "7_b.png"]
    for i in range(3):
        check_mnist_like(ds.images[i].numpy())


def test_import_flat_layout(tmp_path, capsys):
    src = tmp_path / "flat"
    save_digit(src / "7_first try.png")
    save_digit(src / "4_b.png", FOUR)
    save_digit(src / "x_c.png")
    (src / "readme.txt").write_text("my digits")
    summary = import_handwritten(src, tmp_path / "flat_set")
    assert summary[7] == 1 and summary[4] == 1
    assert {f for f, _ in summary["refused"]} == {"x_c.png", "readme.txt"}
    samples = read_index(tmp_path / "flat_set.txt")
    assert sorted((Path(s.path).name, s.label) for s in samples) == [("4_b.png", 4), ("7_first_try.png", 7)]
    assert len(IndexDataset(tmp_path / "flat_set.txt", use_cache=False)) == 2


def test_import_refuses_mixed_layout_and_nothing_usable(tmp_path):
    src = tmp_path / "mixed"
    save_digit(src / "7" / "a.png")
    save_digit(src / "7_b.png")
    with pytest.raises(DataError, match="mixes"):
        import_handwritten(src, tmp_path / "out")
    empty = tmp_path / "nothing" / "3"
    empty.mkdir(parents=True)
    (empty / "a.png").write_text("text")
    with pytest.raises(DataError, match="no usable"):
        import_handwritten(tmp_path / "nothing", tmp_path / "out")
    assert not (tmp_path / "out.txt").exists() and not (tmp_path / "out").exists()


def test_import_overwrites_only_with_force(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    save_digit(first / "7" / "old.png")
    save_digit(second / "4" / "new.png", FOUR)
    out = tmp_path / "set"
    import_handwritten(first, out)
    before = (tmp_path / "set.txt").read_text()
    with pytest.raises(DataError, match="already exists"):
        import_handwritten(second, out)
    assert (tmp_path / "set.txt").read_text() == before and (out / "7_old.png").exists()
    import_handwritten(second, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["4_new.png"]  # replaced wholly, not merged
    for inside in (second / "4", second, tmp_path):  # a set overlapping its source is refused, even forced
        with pytest.raises(DataError, match="overlaps"):
            import_handwritten(second, inside, force=True)
    assert (second / "4" / "new.png").exists()
    assert [s.label for s in read_index(tmp_path / "set.txt")] == [4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "second", "set", "set.txt"]  # no temp left


# ---------------------------------------------------------------- the shipped stand-in sets

def test_shipped_sets_are_complete_and_disjoint():
    test_idx, train_idx = ROOT / "data/handwritten/test.txt", ROOT / "data/handwritten/train.txt"
    test, train = read_index(test_idx), read_index(train_idx)
    counts = Counter(s.label for s in test)
    assert len(test) == 35 and set(counts) == set(range(10)) and set(counts.values()) <= {3, 4}
    assert not {s.path for s in test} & {s.path for s in train}
    a = IndexDataset(test_idx, normalize="never", use_cache=False).images.numpy()
    b = IndexDataset(train_idx, normalize="never", use_cache=False).images.numpy()
    assert not {x.tobytes() for x in a} & {x.tobytes() for x in b}  # no image shared either
