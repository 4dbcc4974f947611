"""test.py / scoring.py on a small run trained here (tiny MNIST, 1 epoch)."""
from __future__ import annotations

import csv
import importlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import train_kfold
from models import build_model
from runs import fold_checkpoint_path, save_checkpoint, load_checkpoint

testcli = importlib.import_module("test")  # the repo's test.py (conftest puts the repo first on sys.path)
assert hasattr(testcli, "score_run"), "imported the stdlib's 'test' package instead of test.py"


@pytest.fixture(scope="module")
def small_run(tiny_data, tmp_path_factory):
    """runs/r with K=2 and K=3 (5 checkpoints), trained on 300 digits for 1 epoch."""
    runs = tmp_path_factory.mktemp("runs")
    assert train_kfold.main(["--train", str(tiny_data / "train.txt"), "--limit", "300", "--epochs", "1",
                             "--lr", "0.003", "--folds", "2", "3", "--jobs", "1", "--device", "cpu",
                             "--runs-dir", str(runs), "--run", "r"]) == 0
    return runs / "r"


@pytest.fixture
def run_copy(small_run, tmp_path):
    dst = tmp_path / "runs" / "r"
    shutil.copytree(small_run, dst)
    return dst


def score(run_dir, *index_files, extra=()):
    args = ["--run", str(run_dir), "--device", "cpu", "--only", *extra]
    for f in index_files:
        args += ["--index", str(f)]
    return testcli.main(args)


def handwritten_like(tiny_data, tmp_path, n=12):
    """A small set with paths, like data/handwritten/test.txt."""
    lines = (tiny_data / "test.txt").read_text().splitlines()[1 : n + 1]
    index = tmp_path / "mine" / "test.txt"
    index.parent.mkdir(parents=True)
    index.write_text("".join(f"{tiny_data / line}\n" for line in lines))
    return index


def test_every_checkpoint_is_scored_and_accuracy_matches_saved_predictions(run_copy, tiny_data, tmp_path):
    mine = handwritten_like(tiny_data, tmp_path)
    assert score(run_copy, tiny_data / "test.txt", mine) == 0
    results = json.loads((run_copy / "test_results.json").read_text())
    assert sorted((e["k"], e["fold"]) for e in results["checkpoints"]) == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert set(results["sets"]) == {f"{tiny_data.name}_test", "mine_test"}  # two 'test.txt': folder prefixed
    for name, info in results["sets"].items():
        truth = np.array([int(c) for c in info["labels"]])
        for e in results["checkpoints"]:
            s = e["scores"][name]
            pred = np.array([int(c) for c in s["pred"]])
            assert len(pred) == len(truth) == s["n"]
            assert s["accuracy"] == pytest.approx((pred == truth).mean())  # recomputed independently
            assert np.array(s["confusion"]).trace() == s["correct"] == (pred == truth).sum()
        for k, per in results["per_k"].items():
            folds = [e["scores"][name]["accuracy"] for e in results["checkpoints"] if str(e["k"]) == k]
            assert per["sets"][name]["mean_accuracy"] == pytest.approx(np.mean(folds))
    small = results["checkpoints"][0]["scores"]["mine_test"]
    assert len(small["confidence"]) == 12 and all(0.1 <= c <= 1 for c in small["confidence"])
    assert len(results["sets"]["mine_test"]["paths"]) == 12
    rows = list(csv.DictReader((run_copy / "test_results.csv").open()))
    assert len(rows) == (5 + 2 + 1) * 2  # checkpoints + per-K ensembles + all-folds ensemble, per set
    assert {r["fold"] for r in rows} == {"0", "1", "2", "ensemble"}
    assert any("best K=" in line for line in results["answer"])


def test_ensemble_of_identical_models_equals_the_single_model(run_copy, tiny_data):
    shutil.copy(fold_checkpoint_path(run_copy, 2, 0), fold_checkpoint_path(run_copy, 2, 1))
    assert score(run_copy, tiny_data / "test.txt") == 0
    results = json.loads((run_copy / "test_results.json").read_text())
    single = next(e for e in results["checkpoints"] if (e["k"], e["fold"]) == (2, 0))["scores"]["test"]
    ens = results["per_k"]["2"]["sets"]["test"]["ensemble"]
    assert ens["pred"] == single["pred"] and ens["accuracy"] == single["accuracy"]
    assert ens["loss"] == pytest.approx(single["loss"], rel=1e-5)


def test_images_prediction_of_a_drawn_digit(run_copy, tmp_path, capsys):
    img = Image.new("L", (300, 400), 255)  # a '1' drawn black on white, large, off-centre
    ImageDraw.Draw(img).line([(190, 60), (170, 330)], fill=0, width=24)
    path = tmp_path / "one.png"
    img.save(path)
    out = testcli.predict_files(run_copy, [path], torch.device("cpu"))
    assert len(out) == 1 and len(out[0]["probabilities"]) == 10
    assert sum(out[0]["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert len(out[0]["top3"]) == 3 and out[0]["top3"][0][1] >= out[0]["top3"][1][1]
    assert testcli.main(["--run", str(run_copy), "--images", str(tmp_path), "--device", "cpu"]) == 0
    assert "one.png" in capsys.readouterr().out


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_damaged_checkpoint_is_a_clear_error_and_nothing_is_written(run_copy, tiny_data, capsys):
    path = fold_checkpoint_path(run_copy, 3, 1)
    path.write_bytes(path.read_bytes()[:1000])
    assert score(run_copy, tiny_data / "test.txt") == 2
    assert str(path) in error_line(capsys)
    assert not (run_copy / "test_results.json").exists() and not (run_copy / "test_results.csv").exists()


def test_checkpoint_of_another_model_is_a_clear_error(run_copy, tiny_data, capsys):
    path = fold_checkpoint_path(run_copy, 2, 1)
    ckpt = load_checkpoint(path)
    ckpt["state_dict"] = build_model("mlp").state_dict()  # MLP weights under the name 'lenet'
    save_checkpoint(path, ckpt)
    assert score(run_copy, tiny_data / "test.txt") == 2
    line = error_line(capsys)
    assert str(path) in line and "do not fit model 'lenet'" in line


def test_run_without_checkpoints_and_missing_index(tmp_path, run_copy, tiny_data, capsys):
    (tmp_path / "empty").mkdir()
    assert score(tmp_path / "empty", tiny_data / "test.txt") == 2
    assert "no checkpoints" in error_line(capsys)
    assert score(run_copy, tmp_path / "nope.txt") == 2
    assert "nope.txt: index file not found" in error_line(capsys)


def test_partial_run_is_scored_for_what_exists(run_copy, tiny_data, capsys):
    fold_checkpoint_path(run_copy, 3, 2).unlink()
    assert score(run_copy, tiny_data / "test.txt") == 0
    assert "K=3 is missing fold(s) [2]" in capsys.readouterr().err
    results = json.loads((run_copy / "test_results.json").read_text())
    assert results["missing"] == {"3": [2]} and results["per_k"]["3"]["complete"] is False
    assert len(results["checkpoints"]) == 4
