"""K-fold cross-validation of a digit recogniser on MNIST: one fresh model per fold,
one checkpoint per fold, for every fold count K (default 4, 5 and 6).

    python train_kfold.py                           # the seed defaults: LeNet, K=4,5,6, 7 epochs
    python train_kfold.py --schedule onecycle       # same peak rate, annealed: steadier, more accurate
    python train_kfold.py --run myrun --k 5 --fold 2   # one fold (e.g. one task of a Slurm job array)

Rerunning with the same --run resumes: finished folds are skipped.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split
from tqdm import tqdm

from dataset import DATA_DIR, DataError, IndexDataset
from engine import evaluate, place_model, resolve_device, train_epoch
from models import MODEL_NAMES, build_model
from runs import (RUNS_DIR, fold_checkpoint_path, fold_metrics_path, list_checkpoints, load_checkpoint,
                  new_run_name, read_json, remove_stale_temp_files, save_checkpoint, set_latest, write_json)

# Keys of config.json that define a run: folds trained with other values never share a folder.
IDENTITY_KEYS = ("model", "epochs", "batch_size", "lr", "seed", "schedule", "augment", "limit",
                 "train_fingerprint", "extra_train")


# ---------------------------------------------------------------- data and folds

def load_training_data(train_index, extra_train=(), limit=None, seed=0):
    """(images uint8 [N,28,28], labels [N], n_base, config entries). The first n_base samples are
    the (optionally --limit'ed, stratified) training set; the rest are --extra-train digits."""
    base = IndexDataset(train_index)
    keep = np.arange(len(base))
    if limit is not None and limit < len(base):
        try:
            keep, _ = train_test_split(keep, train_size=limit, stratify=base.labels.numpy(), random_state=seed)
        except ValueError as e:  # too few of a class on one side of the split
            raise DataError(f"--limit {limit}: cannot draw a stratified subset of {len(base)} samples ({e})") from None
        keep = np.sort(keep)
    images, labels = [base.images[keep]], [base.labels[keep]]
    extras = []
    for index in extra_train:
        ds = IndexDataset(index)
        images.append(ds.images)
        labels.append(ds.labels)
        extras.append({"index": str(index), "fingerprint": ds.fingerprint, "samples": len(ds)})
    info = {"train_index": str(train_index), "train_fingerprint": base.fingerprint, "extra_train": extras}
    return torch.cat(images), torch.cat(labels), len(keep), info


def make_folds(labels: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, validation) index pairs: disjoint, together covering every sample once."""
    try:
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))
    except ValueError as e:
        raise DataError(f"cannot split {len(labels)} samples into {k} stratified folds: {e}") from None


def fold_seed(seed: int, k: int, fold: int) -> int:
    """Each fold's own seed: its result does not depend on which folds ran before it, or where."""
    return seed * 1_000_003 + k * 1_000 + fold


# ---------------------------------------------------------------- one fold

def fold_is_done(run_dir: Path, k: int, fold: int, config: dict) -> dict | None:
    """The finished fold's metrics if its checkpoint is complete and made with `config`, else None."""
    path = fold_checkpoint_path(run_dir, k, fold)
    if not path.exists():
        return None
    try:
        ckpt = load_checkpoint(path)
    except DataError as e:
        print(f"warning: {e}; training that fold again", file=sys.stderr)
        return None
    if {key: ckpt["config"].get(key) for key in IDENTITY_KEYS} != {key: config[key] for key in IDENTITY_KEYS}:
        raise DataError(f"{path}: made with other settings than {run_dir / 'config.json'}; use a new --run")
    if not fold_metrics_path(run_dir, k, fold).exists():  # killed between the two writes
        write_json(fold_metrics_path(run_dir, k, fold), deterministic_metrics(ckpt["metrics"]))
    return ckpt["metrics"]


def deterministic_metrics(metrics: dict) -> dict:
    """The metrics without wall-clock times, so that identical runs give byte-identical JSON."""
    out = {key: v for key, v in metrics.items() if key != "seconds"}
    out["epochs"] = [{key: v for key, v in e.items() if key != "seconds"} for e in metrics["epochs"]]
    return out


def train_fold(run_dir, config, k, fold, images, labels, n_base, device, progress_position=0) -> dict:
    """Train a fresh model on the other K-1 parts (+ extra digits), validate on part `fold`, save it."""
    train_idx, val_idx = make_folds(labels[:n_base].numpy(), k, config["seed"])[fold]
    # --extra-train samples (after n_base) join every training part, never a validation part.
    train_idx = np.concatenate([train_idx, np.arange(n_base, len(labels))])
    seed = fold_seed(config["seed"], k, fold)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = place_model(build_model(config["model"]), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    steps_per_epoch = -(-len(train_idx) // config["batch_size"])
    scheduler = None
    if config["schedule"] == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"],
                                                        total_steps=config["epochs"] * steps_per_epoch)
    images, labels = images.to(device), labels.to(device)  # on CUDA the whole set lives on the device
    train_t, val_t = torch.from_numpy(train_idx).to(device), torch.from_numpy(val_idx).to(device)

    name = f"k{k} fold {fold}"
    bar = tqdm(total=config["epochs"] * len(train_idx), desc=name, unit="img", unit_scale=True,
               position=progress_position, leave=True, dynamic_ncols=True, disable=not sys.stderr.isatty())
    epochs, start = [], time.time()
    for epoch in range(1, config["epochs"] + 1):
        t0 = time.time()
        train_loss, train_acc = train_epoch(model, optimizer, images, labels, train_t, config["batch_size"],
                                            generator, scheduler, config["augment"], on_batch=bar.update)
        val_loss, val_acc = evaluate(model, images, labels, val_t)
        epochs.append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                       "val_loss": val_loss, "val_acc": val_acc, "seconds": round(time.time() - t0, 3)})
        bar.set_postfix_str(f"epoch {epoch} loss {train_loss:.3f} acc {train_acc:.2%} val {val_acc:.2%}")
        if bar.disable:
            print(f"{name} epoch {epoch}/{config['epochs']}: train loss {train_loss:.4f} acc {train_acc:.2%}"
                  f" | val loss {val_loss:.4f} acc {val_acc:.2%} ({time.time() - t0:.1f}s)", flush=True)
    bar.close()
    metrics = {"k": k, "fold": fold, "n_train": len(train_idx), "n_val": len(val_idx),
               "final_val_acc": epochs[-1]["val_acc"], "final_val_loss": epochs[-1]["val_loss"],
               "epochs": epochs, "seconds": round(time.time() - start, 3)}
    checkpoint = {
        "format": 1, "model": config["model"], "k": k, "fold": fold,
        "state_dict": {key: v.cpu() for key, v in model.state_dict().items()},
        "config": config, "metrics": metrics,
        "versions": {"torch": str(torch.__version__), "numpy": np.__version__, "python": platform.python_version()},
        "device": str(device),
    }
    save_checkpoint(fold_checkpoint_path(run_dir, k, fold), checkpoint)  # the checkpoint marks the fold done
    write_json(fold_metrics_path(run_dir, k, fold), deterministic_metrics(metrics))
    return metrics


# ---------------------------------------------------------------- worker processes for --jobs

_worker: dict = {}


def _init_worker(threads, slots, data_args, device):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    torch.set_num_threads(threads)
    _worker.update(data=load_training_data(*data_args), slot=slots.get(), device=torch.device(device))


def _train_in_worker(task):
    run_dir, config, k, fold = task
    images, labels, n_base, _ = _worker["data"]
    return k, fold, train_fold(run_dir, config, k, fold, images, labels, n_base, _worker["device"], _worker["slot"])


# ---------------------------------------------------------------- the sweep

def open_run_dir(args, config: dict) -> Path:
    """Create the run folder, or check that an existing one was made with the same settings."""
    args.run = args.run or new_run_name(config["model"])
    run_dir = Path(args.runs_dir) / args.run
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        old = read_json(cfg_path)
        diff = [f"{key}={old.get(key)!r} (now {config[key]!r})" for key in IDENTITY_KEYS if old.get(key) != config[key]]
        if diff:
            raise DataError(f"{cfg_path}: this run was made with other settings: {', '.join(diff)}; "
                            "use the same settings to resume, or a new --run")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(cfg_path, config)
    return run_dir


def summarize(run_dir: Path, results: dict, fold_counts) -> dict:
    per_k = {}
    for k in fold_counts:
        done = {f: m for (kk, f), m in results.items() if kk == k}
        accs = [done[f]["final_val_acc"] for f in sorted(done)]
        per_k[str(k)] = {
            "folds_done": sorted(done), "missing": [f for f in range(k) if f not in done],
            "val_acc": accs, "mean_val_acc": float(np.mean(accs)) if accs else None,
            "std_val_acc": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0 if accs else None,
            "seconds": round(sum(m["seconds"] for m in done.values()), 1),
        }
    complete = {k: v for k, v in per_k.items() if not v["missing"]}
    best = max(complete, key=lambda k: complete[k]["mean_val_acc"]) if complete else None
    summary = {"run": run_dir.name, "per_k": per_k, "best_k": int(best) if best else None,
               "note": "std is the sample standard deviation (ddof=1) over folds"}
    write_json(run_dir / "summary.json", summary)
    return summary


def print_table(summary: dict, wall: float) -> None:
    print(f"\n{'K':>3}  {'folds':>5}  {'val accuracy (mean ± std)':>26}  {'train s':>8}")
    for k, v in summary["per_k"].items():
        acc = f"{v['mean_val_acc']:.2%} ± {v['std_val_acc']:.2%}" if v["val_acc"] else "-"
        print(f"{k:>3}  {len(v['folds_done']):>2}/{k:<2}  {acc:>26}  {v['seconds']:>8.1f}")
    best = summary["best_k"]
    print(f"best K by mean validation accuracy: {best if best else 'n/a (no K complete)'}; wall time {wall:.1f}s")


def default_jobs(device: torch.device, tasks: int) -> int:
    """Measured on 2 cores: two 1-thread processes train LeNet ~1.5x faster than one 2-thread one."""
    if device.type != "cpu":
        return 1
    return max(1, min(os.cpu_count() or 1, tasks))


def sweep(args) -> dict:
    start = time.time()
    device = resolve_device(args.device)
    if args.train == str(DATA_DIR / "train.txt"):
        from mnist import ensure_mnist

        ensure_mnist(DATA_DIR, args.mnist_dir)
    data_args = (args.train, tuple(args.extra_train), args.limit, args.seed)
    images, labels, n_base, data_info = load_training_data(*data_args)
    config = {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "seed": args.seed, "schedule": args.schedule, "augment": args.augment, "limit": args.limit,
              **data_info, "n_train_base": n_base}
    fold_counts = [args.k] if args.k else args.folds
    for k in fold_counts:
        if k > n_base:
            raise DataError(f"--folds {k}: more folds than the {n_base} training samples")
    run_dir = open_run_dir(args, config)
    set_latest(run_dir)
    if remove_stale_temp_files(run_dir):
        print("removed temporary files left by an interrupted run")
    print(f"run {run_dir}  ({n_base} training samples + {len(labels) - n_base} extra, device {device})")

    tasks, results = [], {}
    for k in fold_counts:
        for fold in ([args.fold] if args.fold is not None else range(k)):
            done = fold_is_done(run_dir, k, fold, config)
            if done is not None:
                results[(k, fold)] = done
            else:
                tasks.append((run_dir, config, k, fold))
    if results:
        print(f"resuming: {len(results)} fold(s) already done, {len(tasks)} to train")
    jobs = args.jobs or default_jobs(device, len(tasks))
    if jobs <= 1 or len(tasks) <= 1:
        for _, _, k, fold in tasks:
            results[(k, fold)] = train_fold(run_dir, config, k, fold, images, labels, n_base, device)
    else:
        ctx = mp.get_context("spawn")  # fork + torch threads can deadlock; spawn works everywhere
        slots = ctx.Queue()
        for s in range(jobs):
            slots.put(s)
        threads = max(1, (os.cpu_count() or 1) // jobs)
        pool = ctx.Pool(jobs, _init_worker, (threads, slots, data_args, str(device)))
        try:
            for k, fold, metrics in pool.imap_unordered(_train_in_worker, tasks):
                results[(k, fold)] = metrics
            pool.close()
        except BaseException:
            pool.terminate()  # workers hold nothing half-written: their writes are atomic
            raise
        finally:
            pool.join()
    if args.fold is not None:  # one fold of many (e.g. a job array): summarise what the folder holds so far
        results = collect_results(run_dir, config)
        fold_counts = sorted({k for k, _ in results})
    summary = summarize(run_dir, results, fold_counts)
    if sys.stderr.isatty():
        print("\n" * 2)
    print_table(summary, time.time() - start)
    print(f"checkpoints in {run_dir}; next: python test.py --run {run_dir.name}")
    return summary


def collect_results(run_dir: Path, config: dict) -> dict:
    """{(K, fold): metrics} for every finished fold in the run folder."""
    results = {}
    for k, folds in list_checkpoints(run_dir).items():
        for fold in folds:
            done = fold_is_done(run_dir, k, fold, config)
            if done is not None:
                results[(k, fold)] = done
    return results


# ---------------------------------------------------------------- CLI

def positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and training (defaults are the original project's)")
    g.add_argument("--model", default="lenet", choices=MODEL_NAMES, help="network (default: lenet)")
    g.add_argument("--folds", type=int, nargs="+", default=[4, 5, 6], metavar="K", help="fold counts (default: 4 5 6)")
    g.add_argument("--epochs", type=positive(int), default=7, help="epochs per fold (default: 7)")
    g.add_argument("--batch-size", type=positive(int), default=64, help="(default: 64)")
    g.add_argument("--lr", type=positive(float), default=0.01, help="Adam learning rate; the peak rate with onecycle (default: 0.01)")
    g.add_argument("--schedule", choices=["none", "onecycle"], default="none",
                   help="learning-rate schedule: none = constant, the seed's (default: none)")
    g.add_argument("--augment", action="store_true", help="random affine + stroke-width jitter on training batches")
    g.add_argument("--seed", type=int, default=0, help="seeds folds, weights and batch order (default: 0)")
    d = p.add_argument_group("data")
    d.add_argument("--train", default=str(DATA_DIR / "train.txt"), help="training index (default: data/train.txt, prepared if missing)")
    d.add_argument("--extra-train", action="append", default=[], metavar="INDEX",
                   help="your own digits, added to every fold's training part, never validation (repeatable)")
    d.add_argument("--limit", type=positive(int), help="train on a stratified subset of N samples (smoke runs, tests)")
    d.add_argument("--mnist-dir", help="folder with MNIST's IDX files, if data/ is not prepared yet")
    r = p.add_argument_group("run")
    r.add_argument("--run", help="run name under runs/ (default: a new timestamped name); an existing one resumes")
    r.add_argument("--runs-dir", default=str(RUNS_DIR), help="(default: runs/)")
    r.add_argument("--k", type=int, help="with --fold: train just fold I of the K-fold split")
    r.add_argument("--fold", type=int, metavar="I", help="fold index 0..K-1 (with --k)")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="(default: auto)")
    r.add_argument("--jobs", type=positive(int), help="folds trained in parallel processes "
                   "(default: one per core on CPU, 1 on a GPU)")
    args = p.parse_args(argv)
    for k in args.folds + ([args.k] if args.k is not None else []):
        if k < 2:
            raise DataError(f"--folds/--k {k}: K-fold needs K >= 2")
    if (args.k is None) != (args.fold is None):
        raise DataError("--k and --fold go together: --k 5 --fold 2 trains fold 2 of the 5-fold split")
    if args.fold is not None and not 0 <= args.fold < args.k:
        raise DataError(f"--fold {args.fold}: folds of --k {args.k} are numbered 0..{args.k - 1}")
    return args


def main(argv=None) -> int:
    args = None
    try:
        args = parse_args(argv)
        sweep(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run = args.run if args is not None and args.run else "NAME"
        print(f"\ninterrupted: finished folds are saved; rerun the same command with --run {run} to resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
