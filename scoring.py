"""Score every fold checkpoint of a run, and the fold ensembles, on index files of digits.

Used by test.py (the CLI) and plot_results.py. The results are plain JSON-able dicts;
per-sample predictions are kept compact: a string of predicted digits per model and set
(one character per sample, in index order), plus paths and confidences for small sets.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from dataset import DATA_DIR, DataError, IndexDataset, atomic_write_text, warn
from engine import predict_logits
from runs import list_checkpoints, load_fold_model, read_json

SMALL_SET = 1000  # sets up to this size also keep each sample's path and confidence


DEFAULT_SET_NAMES = {DATA_DIR / "test.txt": "mnist_test", DATA_DIR / "handwritten" / "test.txt": "handwritten_test"}
MNIST_TEST, HANDWRITTEN_TEST = DEFAULT_SET_NAMES


def default_index_files(extra=()) -> list[Path]:
    """data/test.txt (prepared if missing), data/handwritten/test.txt if present, then `extra`."""
    if not MNIST_TEST.exists():
        from mnist import ensure_mnist

        ensure_mnist(DATA_DIR)
    files = [MNIST_TEST]
    if HANDWRITTEN_TEST.exists():
        files.append(HANDWRITTEN_TEST)
    else:
        warn(f"{HANDWRITTEN_TEST}: not found; scoring without the handwritten set")
    return files + [Path(f) for f in extra]


def set_names(index_files) -> list[str]:
    """The name each set is reported under: the default sets' fixed names, else the file's stem
    ('my_digits.txt' -> 'my_digits'), prefixed by its folder where two stems clash."""
    paths = [Path(f).resolve() for f in index_files]
    names = [DEFAULT_SET_NAMES.get(p, p.stem) for p in paths]
    names = [f"{p.parent.name}_{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]
    for f, n in zip(index_files, names):
        if names.count(n) > 1:
            raise DataError(f"{f}: two index files would both be reported as {n!r}")
    return names


def score_probs(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, mean loss (NLL of the probabilities), per-class accuracy, confusion matrix, predictions."""
    probs, labels = probs.float().cpu(), labels.cpu()
    pred = probs.argmax(1)
    nll = -torch.log(probs[torch.arange(len(labels)), labels].clamp_min(1e-12))
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)  # rows: true, cols: predicted
    per_class = [None if confusion[c].sum() == 0 else round(confusion[c, c].item() / confusion[c].sum().item(), 6)
                 for c in range(10)]
    return {"n": len(labels), "correct": int((pred == labels).sum()), "accuracy": (pred == labels).float().mean().item(),
            "loss": nll.mean().item(), "per_class_accuracy": per_class, "confusion": confusion.tolist(),
            "pred": "".join(map(str, pred.tolist()))}


def with_samples(score: dict, probs: torch.Tensor, small: bool) -> dict:
    if small:
        score["confidence"] = [round(v, 5) for v in probs.max(1).values.tolist()]
    return score


def expected_folds(run_dir: Path, found: dict) -> dict[int, list[int]]:
    """Fold counts the run asked for (summary.json) or has folders for, with their missing folds."""
    ks = set(found)
    if (run_dir / "summary.json").exists():
        ks |= {int(k) for k in read_json(run_dir / "summary.json").get("per_k", {})}
    return {k: [f for f in range(k) if f not in found.get(k, {})] for k in sorted(ks)}


def score_run(run_dir: Path, index_files, device="cpu", batch_size: int = 1000) -> dict:
    """Score every k<K>/fold<i>.pt of `run_dir` on each index file; returns the results dict."""
    run_dir = Path(run_dir)
    found = list_checkpoints(run_dir)
    if not found:
        raise DataError(f"{run_dir}: no checkpoints (k<K>/fold<i>.pt); train with `python train_kfold.py`")
    missing = {k: m for k, m in expected_folds(run_dir, found).items() if m}
    for k, m in missing.items():
        warn(f"{run_dir.name}: K={k} is missing fold(s) {m}; scoring the {len(found.get(k, {}))} that exist")

    sets = {}
    for index, name in zip(index_files, set_names(index_files)):
        ds = IndexDataset(index)  # decoded once (the cache), reused for every checkpoint
        sets[name] = {"index": str(index), "data": ds, "small": len(ds) <= SMALL_SET,
                      "images": ds.images.to(device), "labels": ds.labels}

    probs = {}  # (k, fold) -> {set: probs [N,10] on the CPU}
    results = {"run": run_dir.name, "sets": {}, "checkpoints": [], "per_k": {}, "missing": missing}
    for name, s in sets.items():
        info = {"index": s["index"], "n": len(s["data"]), "labels": "".join(map(str, s["labels"].tolist()))}
        if s["small"]:
            info["paths"] = [str(p) for p in s["data"].paths]
        results["sets"][name] = info
    model_name = None
    for k, folds in found.items():
        for fold, path in folds.items():
            model, ckpt = load_fold_model(path, device, expect_model=model_name)
            model_name = ckpt["model"]
            entry = {"k": k, "fold": fold, "checkpoint": str(path.relative_to(run_dir)), "model": model_name, "scores": {}}
            probs[(k, fold)] = {}
            for name, s in sets.items():
                p = torch.softmax(predict_logits(model, s["images"], batch_size=batch_size).float(), 1).cpu()
                probs[(k, fold)][name] = p
                entry["scores"][name] = with_samples(score_probs(p, s["labels"]), p, s["small"])
            results["checkpoints"].append(entry)

    for k, folds in found.items():
        per = {"folds": sorted(folds), "complete": k not in missing, "sets": {}}
        for name, s in sets.items():
            fold_probs = [probs[(k, f)][name] for f in folds]
            fold_accs = [e["scores"][name]["accuracy"] for e in results["checkpoints"] if e["k"] == k]
            ens = torch.stack(fold_probs).mean(0)  # the fold ensemble: average of the K models' softmax
            per["sets"][name] = {
                "fold_accuracy": fold_accs, "mean_accuracy": float(np.mean(fold_accs)),
                "std_accuracy": float(np.std(fold_accs, ddof=1)) if len(fold_accs) > 1 else 0.0,
                "best_fold": sorted(folds)[int(np.argmax(fold_accs))],
                "ensemble": with_samples(score_probs(ens, s["labels"]), ens, s["small"]),
            }
        results["per_k"][str(k)] = per
    results["all_folds_ensemble"] = {}
    for name, s in sets.items():
        ens = torch.stack([p[name] for p in probs.values()]).mean(0)
        results["all_folds_ensemble"][name] = with_samples(score_probs(ens, s["labels"]), ens, s["small"])
    results["best_k"] = {name: best_k(results, name) for name in sets}
    results["answer"] = answer(results)
    return results


def best_k(results: dict, name: str) -> dict:
    """The K whose fold models score best on average (ties: fewer folds), and the K whose ensemble does."""
    per_k = results["per_k"]
    by_mean = max(per_k, key=lambda k: (per_k[k]["sets"][name]["mean_accuracy"], -int(k)))
    by_ens = max(per_k, key=lambda k: (per_k[k]["sets"][name]["ensemble"]["accuracy"], -int(k)))
    return {"by_mean_fold_accuracy": int(by_mean), "by_ensemble_accuracy": int(by_ens)}


def answer(results: dict) -> list[str]:
    """Plain sentences answering the original question: which fold count gives the better model?"""
    lines = []
    for name, info in results["sets"].items():
        per_k = results["per_k"]
        ranked = sorted(per_k, key=lambda k: -per_k[k]["sets"][name]["mean_accuracy"])
        best, n = ranked[0], info["n"]
        parts = [f"K={k}: {per_k[k]['sets'][name]['mean_accuracy']:.2%}" for k in sorted(per_k, key=int)]
        text = f"{name} ({n} digits): mean single-model accuracy {', '.join(parts)}; best K={best}"
        if len(ranked) > 1:
            gap = per_k[best]["sets"][name]["mean_accuracy"] - per_k[ranked[-1]]["sets"][name]["mean_accuracy"]
            text += f", {gap:.2%} ({gap * n:.1f} digits) above K={ranked[-1]}"
        ens = {k: per_k[k]["sets"][name]["ensemble"] for k in per_k}
        text += "; fold ensembles " + ", ".join(f"K={k}: {e['correct']}/{n}" for k, e in ens.items())
        lines.append(text + ".")
    return lines


def results_csv(results: dict) -> str:
    """One row per checkpoint and per ensemble, per set."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "k", "fold", "set", "n", "correct", "accuracy", "loss"])
    rows = [(e["k"], e["fold"], e["scores"]) for e in results["checkpoints"]]
    rows += [(int(k), "ensemble", {n: s["ensemble"] for n, s in per["sets"].items()}) for k, per in results["per_k"].items()]
    rows += [("all", "ensemble", results["all_folds_ensemble"])]
    for k, fold, scores in rows:
        for name, s in scores.items():
            w.writerow([results["run"], k, fold, name, s["n"], s["correct"], f"{s['accuracy']:.6f}", f"{s['loss']:.6f}"])
    return buf.getvalue()


def write_results(run_dir: Path, results: dict) -> tuple[Path, Path]:
    json_path, csv_path = Path(run_dir) / "test_results.json", Path(run_dir) / "test_results.csv"
    atomic_write_text(csv_path, results_csv(results))
    atomic_write_text(json_path, json.dumps(results, indent=1) + "\n")  # last: its mtime marks a complete scoring
    return json_path, csv_path


def pick_k(run_dir: Path) -> int:
    """The best K on the MNIST test set if test.py has scored the run, else by validation accuracy."""
    if (run_dir / "test_results.json").exists():
        best = read_json(run_dir / "test_results.json")["best_k"]
        return (best.get("mnist_test") or next(iter(best.values())))["by_mean_fold_accuracy"]
    if (run_dir / "summary.json").exists() and read_json(run_dir / "summary.json").get("best_k"):
        return read_json(run_dir / "summary.json")["best_k"]
    found = list_checkpoints(run_dir)
    if not found:
        raise DataError(f"{run_dir}: no checkpoints (k<K>/fold<i>.pt)")
    return max(found, key=lambda k: len(found[k]))


def ensemble_for_k(run_dir: Path, k: int, device="cpu") -> list:
    """The fold models of one K, for predicting new images."""
    folds = list_checkpoints(run_dir).get(k)
    if not folds:
        raise DataError(f"{run_dir}: no checkpoints for K={k}")
    return [load_fold_model(p, device)[0] for p in folds.values()]


@torch.inference_mode()
def predict_images(models: list, images_uint8: torch.Tensor) -> torch.Tensor:
    """Average softmax of `models` on a uint8 [N,28,28] tensor -> probabilities [N,10]."""
    device = next(models[0].parameters()).device
    images_uint8 = images_uint8.to(device)
    return torch.stack([torch.softmax(predict_logits(m, images_uint8).float(), 1) for m in models]).mean(0).cpu()
