"""plot_results.py on a tiny K-fold run (K=2 and 3, one epoch on 120 digits) scored on a
200-digit MNIST-like test set and 20 "handwritten" digits imported from larger photos."""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import plot_results
import train_kfold
from handwriting import import_handwritten

testcli = importlib.import_module("test")  # the repo's test.py (conftest puts the repo first on sys.path)

PNGS = ["kfold_accuracy.png", "learning_curves.png", "confusion_matrix.png",
        "handwritten_predictions.png", "misclassified_test.png"]


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_data):
    """A trained (unscored) run 't' under base/runs, plus the two index files to score it on."""
    root = tmp_path_factory.mktemp("plot_base")
    lines = [ln for ln in (tiny_data / "test.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    rows = [ln.rsplit(",", 1) for ln in lines]
    (root / "mnist_test.txt").write_text("".join(f"{tiny_data / p},{lb}\n" for p, lb in rows))
    for label in range(10):  # two "photos" per digit: dark ink on light paper, 60x80, RGB
        for n, (p, _) in enumerate([r for r in rows if r[1].strip() == str(label)][:2]):
            ink = np.asarray(Image.open(tiny_data / p).convert("L"))
            photo = Image.fromarray(255 - ink // 2).resize((60, 80), Image.BILINEAR).convert("RGB")
            (root / "photos" / str(label)).mkdir(parents=True, exist_ok=True)
            photo.save(root / "photos" / str(label) / f"img{n}.png")
    import_handwritten(root / "photos", root / "handwritten_test")
    rc = train_kfold.main(["--train", str(tiny_data / "train.txt"), "--limit", "120", "--epochs", "1",
                           "--folds", "2", "3", "--runs-dir", str(root / "runs"), "--run", "t",
                           "--jobs", "1", "--device", "cpu"])
    assert rc == 0
    return root


@pytest.fixture
def run(base, tmp_path):
    """A private copy of the base run: (runs dir, index-file arguments)."""
    shutil.copytree(base / "runs", tmp_path / "runs", symlinks=True)
    return tmp_path / "runs", ["--index", str(base / "mnist_test.txt"), "--index", str(base / "handwritten_test.txt")]


def score(runs, index_args):
    assert testcli.main(["--run", "t", "--runs-dir", str(runs), *index_args, "--only"]) == 0


def plot(runs, *extra):
    return plot_results.main(["--run", "t", "--runs-dir", str(runs), *extra])


def check_outputs(plots: Path):
    for name in PNGS:
        with Image.open(plots / name) as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200, name
    md = (plots / "summary.md").read_text()
    for name in PNGS:
        assert f"]({name})" in md, name
    return md


def test_every_figure_and_summary(run, capsys):
    runs, index_args = run
    score(runs, index_args)
    capsys.readouterr()
    assert plot(runs) == 0
    out = capsys.readouterr().out
    assert "scoring run" not in out  # test_results.json is current: read, not recomputed
    for name in PNGS + ["summary.md"]:
        assert str(runs / "t" / "plots" / name) in out
    md = check_outputs(runs / "t" / "plots")
    assert "| 2 | 2/2 |" in md.replace("**", "") and "handwritten_test" in md and "## Answer" in md
    assert not list((runs / "t" / "plots").glob(".*.tmp"))  # atomic writes leave no temporaries


def test_handwritten_originals_are_found(base):
    index = base / "handwritten_test.txt"
    originals = plot_results._originals(index)
    stems = [ln.split(",")[0] for ln in index.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(stems) == 20
    assert all(Path(s).stem.lower() in originals for s in stems)
    pair = plot_results._pair_image(originals[Path(stems[0]).stem.lower()], np.zeros((28, 28), np.uint8))
    assert pair.shape[0] == 112 and pair.shape[1] > 200  # photo | digit side by side


def test_scores_first_when_results_are_missing(run, capsys):
    runs, index_args = run
    assert not (runs / "t" / "test_results.json").exists()
    assert plot(runs, *index_args) == 0
    assert "scoring run t first (no test_results.json yet)" in capsys.readouterr().out
    assert (runs / "t" / "test_results.json").exists()
    check_outputs(runs / "t" / "plots")


def test_partial_run_draws_what_exists(run, capsys):
    runs, index_args = run
    score(runs, index_args)
    (runs / "t" / "k3" / "fold1.pt").unlink()
    (runs / "t" / "k3" / "fold1.json").unlink()
    capsys.readouterr()
    assert plot(runs) == 0  # rescored on the sets of the old results: the checkpoints changed
    out = capsys.readouterr().out
    assert "scored other checkpoints" in out and "K=3 is missing fold(s) 1" in out
    md = check_outputs(runs / "t" / "plots")
    assert "K=3 is missing fold(s) 1" in md and "| 3 | 2/3 |" in md.replace("**", "")
    results = plot_results.read_json(runs / "t" / "test_results.json")
    assert {(e["k"], e["fold"]) for e in results["checkpoints"]} == {(2, 0), (2, 1), (3, 0), (3, 2)}


def test_empty_run_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert plot_results.main(["--run", "empty", "--runs-dir", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no checkpoints" in err and err.count("\n") == 1
    assert not (tmp_path / "empty" / "plots").exists()
    assert plot_results.main(["--run", "nope", "--runs-dir", str(tmp_path)]) != 0
    assert capsys.readouterr().err.startswith("error: nope: no such run")


def test_accuracy_axis_shows_small_differences():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots()
    plot_results._percent_axis(ax, [0.991, 0.992, 0.993])
    lo, hi = ax.get_ylim()
    plt.close(fig)
    assert 0.985 < lo < 0.991 and 0.993 < hi <= 1.0  # 0.1% is a visible step, and never above 100%


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as e:
        plot_results.parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(opt in out for opt in ("--run", "--show", "--rescore", "--index", "plots"))
