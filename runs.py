"""The run folder: where each file of a K-fold run lives, and how it is written and read.

runs/<run>/config.json        hyperparameters and data fingerprints (a run never mixes two)
runs/<run>/k<K>/fold<i>.pt    checkpoint: state_dict, model name, config, metrics, versions
runs/<run>/k<K>/fold<i>.json  the fold's metrics alone (deterministic: no timings)
runs/<run>/summary.json       per K: mean/std of final validation accuracy, seconds; best K
runs/<run>/test_results.*     written by test.py;  runs/<run>/plots/ by plot_results.py
runs/latest                   symlink to the newest run
"""
from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import torch

from dataset import DataError, atomic_write_bytes, atomic_write_text

RUNS_DIR = Path(__file__).resolve().parent / "runs"
CHECKPOINT_FORMAT = 1
FOLD_FILE = re.compile(r"^fold(\d+)\.pt$")
K_DIR = re.compile(r"^k(\d+)$")


def fold_checkpoint_path(run_dir: Path, k: int, fold: int) -> Path:
    return Path(run_dir) / f"k{k}" / f"fold{fold}.pt"


def fold_metrics_path(run_dir: Path, k: int, fold: int) -> Path:
    return Path(run_dir) / f"k{k}" / f"fold{fold}.json"


def new_run_name(model: str) -> str:
    return f"{time.strftime('%Y-%m-%d_%H%M%S')}_{model}"


def write_json(path: Path, obj) -> None:
    atomic_write_text(Path(path), json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def set_latest(run_dir: Path) -> None:
    """Point runs/latest at run_dir (a relative symlink, swapped in atomically)."""
    run_dir = Path(run_dir).resolve()
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError:  # no symlinks (some Windows setups): a one-line text file naming the run
        tmp.unlink(missing_ok=True)
        if latest.is_symlink() or latest.is_file():
            atomic_write_text(latest, run_dir.name + "\n")


def resolve_run(run: str | None = None, runs_dir: Path = RUNS_DIR) -> Path:
    """A run name (under runs/), a path to a run folder, or None for runs/latest."""
    runs_dir = Path(runs_dir)
    if run is None:
        latest = runs_dir / "latest"
        if latest.is_file() and not latest.is_symlink():
            run = latest.read_text(encoding="utf-8").strip()
        elif latest.exists():
            return latest.resolve()
        else:
            raise DataError(f"{runs_dir}: no runs yet (no 'latest'); train one with `python train_kfold.py`")
    for candidate in (Path(run), runs_dir / run):
        if candidate.is_dir():
            return candidate.resolve()
    raise DataError(f"{run}: no such run folder (looked in . and {runs_dir})")


def list_checkpoints(run_dir: Path) -> dict[int, dict[int, Path]]:
    """{K: {fold: path}} for every k<K>/fold<i>.pt in the run folder, sorted."""
    found: dict[int, dict[int, Path]] = {}
    for kdir in sorted(Path(run_dir).glob("k*")):
        km = K_DIR.match(kdir.name)
        if not (km and kdir.is_dir()):
            continue
        folds = {int(m.group(1)): f for f in kdir.iterdir() if (m := FOLD_FILE.match(f.name))}
        if folds:
            found[int(km.group(1))] = dict(sorted(folds.items()))
    return dict(sorted(found.items()))


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Load a fold checkpoint safely (weights_only=True: no code in the file can run)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: checkpoint not found") from None
    except Exception as e:  # damaged, truncated, not a torch file, or a pickle that wants to run code
        # torch's refusal is many lines of advice; keep the first line that names the cause.
        advice = ("Weights only load failed", "Please file an issue", "Check the documentation", "Re-running",
                  "In PyTorch 2.6", "(1) ", "(2) ")
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith(advice)]
        reason = lines[0].removeprefix("WeightsUnpickler error: ") if lines else type(e).__name__
        raise DataError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "state_dict" not in ckpt:
        raise DataError(f"{path}: not a fold checkpoint of this repo (format {CHECKPOINT_FORMAT})")
    return ckpt


def load_fold_model(path: Path, device: torch.device | str = "cpu", expect_model: str | None = None):
    """(model in eval mode on `device`, checkpoint dict); a clear error if the weights don't fit."""
    from engine import place_model
    from models import MODEL_NAMES, build_model

    ckpt = load_checkpoint(path)
    name = ckpt.get("model")
    if name not in MODEL_NAMES:
        raise DataError(f"{path}: unknown model {name!r} (this repo has {', '.join(MODEL_NAMES)})")
    if expect_model is not None and name != expect_model:
        raise DataError(f"{path}: checkpoint holds model {name!r}, expected {expect_model!r}")
    model = build_model(name)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: weights do not fit model {name!r} "
                        f"({str(e).strip().splitlines()[0][:160]})") from None
    return place_model(model, torch.device(device)).eval(), ckpt


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temp_files(run_dir: Path, max_age_s: float = 3600) -> int:
    """Delete temporary files (.NAME.PID.tmp) left by killed writers; the real files are never touched.

    A temp file is stale when its writer is gone from this machine, or it is over an hour
    old (writers on other machines of a cluster sharing the folder finish in seconds).
    """
    removed = 0
    for p in Path(run_dir).rglob(".*.tmp"):
        m = re.match(r"^\..*\.(\d+)\.tmp$", p.name)
        try:
            old = time.time() - p.stat().st_mtime > max_age_s
        except FileNotFoundError:
            continue
        if old or (m and not pid_alive(int(m.group(1)))):
            p.unlink(missing_ok=True)
            removed += 1
    return removed
