"""train_kfold.py on the tiny prepared MNIST (600 training digits), 1 epoch, CPU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import train_kfold
from models import build_model
from runs import fold_checkpoint_path, fold_metrics_path, load_checkpoint
from train_kfold import fold_seed, make_folds


def train(tmp_path, data, *extra, run="r", limit=300):
    args = ["--train", str(data / "train.txt"), "--limit", str(limit), "--epochs", "1", "--jobs", "1",
            "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--run", run, *extra]
    return train_kfold.main(args)


def fold_jsons(run_dir):
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.glob("k*/fold*.json"))}


@pytest.mark.parametrize("k", [4, 5, 6])
def test_folds_are_stratified_disjoint_and_cover_the_data(tiny_data, k):
    _, _, n_base, _ = train_kfold.load_training_data(tiny_data / "train.txt", limit=300)
    labels = train_kfold.load_training_data(tiny_data / "train.txt", limit=300)[1].numpy()
    folds = make_folds(labels, k, seed=0)
    assert len(folds) == k and n_base == 300
    vals = [set(v.tolist()) for _, v in folds]
    assert set().union(*vals) == set(range(len(labels)))  # covers every sample
    assert sum(len(v) for v in vals) == len(labels)  # ... exactly once: disjoint
    for train_idx, val_idx in folds:
        assert not set(train_idx.tolist()) & set(val_idx.tolist())
    per_class = np.array([np.bincount(labels[v], minlength=10) for _, v in folds])
    assert (per_class.max(0) - per_class.min(0) <= 1).all()  # stratified: each class spread evenly
    assert [v.tolist() for _, v in make_folds(labels, k, seed=0)] == [v.tolist() for _, v in folds]
    assert [v.tolist() for _, v in make_folds(labels, k, seed=1)] != [v.tolist() for _, v in folds]


def test_limit_is_a_stratified_subset(tiny_data):
    images, labels, n_base, info = train_kfold.load_training_data(tiny_data / "train.txt", limit=200)
    assert n_base == len(labels) == 200 and images.shape == (200, 28, 28)
    assert np.bincount(labels.numpy(), minlength=10).tolist() == [20] * 10


def test_each_fold_gets_a_fresh_model(tiny_data, tmp_path, monkeypatch):
    built = []

    def recording_build(name):
        model = build_model(name)
        built.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(train_kfold, "build_model", recording_build)
    assert train(tmp_path, tiny_data, "--folds", "3") == 0
    assert len(built) == 3
    end_of_fold0 = load_checkpoint(fold_checkpoint_path(tmp_path / "runs" / "r", 3, 0))["state_dict"]
    start_of_fold1 = built[1]
    assert any(not torch.equal(start_of_fold1[k], end_of_fold0[k]) for k in end_of_fold0)
    # ... and it is exactly a new model from the fold's own seed, not a copy of anything trained.
    torch.manual_seed(fold_seed(0, 3, 1))
    fresh = build_model("lenet").state_dict()
    assert all(torch.equal(fresh[k], start_of_fold1[k]) for k in fresh)


def test_checkpoint_contents(tiny_data, tmp_path):
    assert train(tmp_path, tiny_data, "--folds", "2", "--lr", "0.003") == 0
    run = tmp_path / "runs" / "r"
    ckpt = torch.load(fold_checkpoint_path(run, 2, 1), map_location="cpu", weights_only=True)
    assert ckpt["model"] == "lenet" and (ckpt["k"], ckpt["fold"]) == (2, 1)
    cfg = ckpt["config"]
    assert (cfg["epochs"], cfg["batch_size"], cfg["lr"], cfg["seed"], cfg["schedule"]) == (1, 64, 0.003, 0, "none")
    assert len(cfg["train_fingerprint"]) == 64 and cfg["limit"] == 300
    m = ckpt["metrics"]
    assert (m["n_train"], m["n_val"]) == (150, 150) and len(m["epochs"]) == 1
    assert set(m["epochs"][0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    assert 0 <= m["final_val_acc"] <= 1 and m["final_val_acc"] == m["epochs"][-1]["val_acc"]
    assert ckpt["versions"]["torch"] == str(torch.__version__)
    build_model("lenet").load_state_dict(ckpt["state_dict"])  # the weights fit the named model
    on_disk = json.loads(fold_metrics_path(run, 2, 1).read_text())
    assert on_disk["final_val_acc"] == m["final_val_acc"] and "seconds" not in on_disk
    summary = json.loads((run / "summary.json").read_text())
    assert summary["per_k"]["2"]["folds_done"] == [0, 1] and summary["best_k"] == 2
    assert (tmp_path / "runs" / "latest").resolve() == run.resolve()


def test_resume_skips_finished_folds(tiny_data, tmp_path, capsys):
    assert train(tmp_path, tiny_data, "--folds", "2", "3") == 0
    run = tmp_path / "runs" / "r"
    mtimes = {p: p.stat().st_mtime_ns for p in run.glob("k*/fold*.pt")}
    assert len(mtimes) == 5
    fold_checkpoint_path(run, 3, 2).unlink()
    fold_metrics_path(run, 2, 0).unlink()  # as if killed between the checkpoint and its JSON
    capsys.readouterr()
    assert train(tmp_path, tiny_data, "--folds", "2", "3") == 0
    out = capsys.readouterr().out
    assert "resuming: 4 fold(s) already done, 1 to train" in out
    for p, t in mtimes.items():
        assert (p.stat().st_mtime_ns == t) == (p != fold_checkpoint_path(run, 3, 2)), p
    assert fold_metrics_path(run, 2, 0).exists()


def test_same_seed_gives_identical_metrics_json(tiny_data, tmp_path):
    assert train(tmp_path, tiny_data, "--folds", "2", "3", run="a") == 0
    assert train(tmp_path, tiny_data, "--folds", "2", "3", run="b") == 0
    a, b = fold_jsons(tmp_path / "runs" / "a"), fold_jsons(tmp_path / "runs" / "b")
    assert len(a) == 5 and a == b
    assert train(tmp_path, tiny_data, "--folds", "2", "3", "--seed", "1", run="c") == 0
    assert fold_jsons(tmp_path / "runs" / "c") != a


def test_single_fold_mode(tiny_data, tmp_path):
    assert train(tmp_path, tiny_data, "--k", "5", "--fold", "3") == 0
    run = tmp_path / "runs" / "r"
    assert [p.relative_to(run).as_posix() for p in run.glob("k*/fold*.pt")] == ["k5/fold3.pt"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["per_k"]["5"]["folds_done"] == [3] and summary["per_k"]["5"]["missing"] == [0, 1, 2, 4]
    assert summary["best_k"] is None  # no K is complete yet
    # The next task of the "job array" writes into the same folder.
    assert train(tmp_path, tiny_data, "--k", "5", "--fold", "0") == 0
    assert json.loads((run / "summary.json").read_text())["per_k"]["5"]["folds_done"] == [0, 3]


def test_extra_train_never_lands_in_validation(tiny_data, tmp_path, monkeypatch):
    extra = tmp_path / "extra.txt"  # 40 test digits, by absolute path, as one's own extra training digits
    lines = (tiny_data / "test.txt").read_text().splitlines()[1:41]  # [0] is the header comment
    extra.write_text("".join(f"{tiny_data / line}\n" for line in lines))
    seen_val = []
    real_evaluate = train_kfold.evaluate

    def recording_evaluate(model, images, labels, idx=None, **kw):
        seen_val.append(idx.clone())
        return real_evaluate(model, images, labels, idx, **kw)

    monkeypatch.setattr(train_kfold, "evaluate", recording_evaluate)
    assert train(tmp_path, tiny_data, "--folds", "3", "--extra-train", str(extra)) == 0
    assert len(seen_val) == 3
    val_all = torch.cat(seen_val)
    assert val_all.max().item() < 300 and sorted(val_all.tolist()) == list(range(300))
    ckpt = load_checkpoint(fold_checkpoint_path(tmp_path / "runs" / "r", 3, 0))
    assert ckpt["metrics"]["n_train"] == 200 + 40 and ckpt["metrics"]["n_val"] == 100
    assert ckpt["config"]["extra_train"][0]["samples"] == 40


def test_other_settings_never_mix_into_a_run(tiny_data, tmp_path, capsys):
    assert train(tmp_path, tiny_data, "--folds", "2") == 0
    capsys.readouterr()
    assert train(tmp_path, tiny_data, "--folds", "2", "--lr", "0.001") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "lr=0.01 (now 0.001)" in err and len(err.splitlines()) == 1


def test_onecycle_and_augment_train(tiny_data, tmp_path):
    assert train(tmp_path, tiny_data, "--folds", "2", "--schedule", "onecycle", "--augment", "--model", "mlp") == 0
    ckpt = load_checkpoint(fold_checkpoint_path(tmp_path / "runs" / "r", 2, 0))
    assert ckpt["model"] == "mlp" and ckpt["config"]["schedule"] == "onecycle" and ckpt["config"]["augment"]


def test_parallel_jobs_match_the_folds_of_one_job(tiny_data, tmp_path):
    base = ["--train", str(tiny_data / "train.txt"), "--limit", "300", "--epochs", "1", "--device", "cpu",
            "--runs-dir", str(tmp_path / "runs"), "--folds", "2"]
    assert train_kfold.main(base + ["--run", "par", "--jobs", "2"]) == 0
    run = tmp_path / "runs" / "par"
    assert sorted(p.name for p in run.glob("k2/fold*.pt")) == ["fold0.pt", "fold1.pt"]
    assert json.loads((run / "summary.json").read_text())["per_k"]["2"]["missing"] == []


@pytest.mark.parametrize("bad, message", [
    (["--folds", "1"], "K >= 2"),
    (["--k", "5", "--fold", "7"], "0..4"),
    (["--k", "5"], "go together"),
])
def test_bad_fold_arguments(tiny_data, tmp_path, capsys, bad, message):
    assert train(tmp_path, tiny_data, *bad) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
