"""Score every fold checkpoint of a run on the MNIST test set and your handwritten digits.

    python test.py                          # newest run: data/test.txt + data/handwritten/test.txt
    python test.py --run NAME --index my_digits.txt
    python test.py --images photo.jpg my_digits/   # predict digits with the best K's fold ensemble

Writes runs/<run>/test_results.json and test_results.csv and prints a table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dataset import DataError, load_digit
from engine import resolve_device
from handwriting import IMAGE_EXTS
from runs import RUNS_DIR, resolve_run
from scoring import default_index_files, ensemble_for_k, pick_k, predict_images, score_run, write_results

def print_results(results: dict) -> None:
    names = list(results["sets"])
    w = max(20, *(len(n) for n in names))

    def row(k, what, cells):
        print(f"{k:>3} {what:>8}  " + "  ".join(f"{c:>{w}}" for c in cells))

    print(f"\nrun {results['run']}: accuracy per checkpoint (" + ", ".join(
        f"{n}: {results['sets'][n]['n']} digits" for n in names) + ")")
    row("K", "fold", names)
    for k, per in results["per_k"].items():
        for e in (e for e in results["checkpoints"] if str(e["k"]) == k):
            row(k, e["fold"], [f"{e['scores'][n]['accuracy']:.2%}" for n in names])
        sets = per["sets"]
        row(k, "mean±std", [f"{sets[n]['mean_accuracy']:.2%} ± {sets[n]['std_accuracy']:.2%}" for n in names])
        row(k, "ensemble", [f"{sets[n]['ensemble']['accuracy']:.2%}" for n in names])
    row("all", "ensemble", [f"{results['all_folds_ensemble'][n]['accuracy']:.2%}" for n in names])
    print()
    for line in results["answer"]:
        print(line)


def image_files(paths) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS)
        elif p.exists():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not files:
        raise DataError(f"no image files ({', '.join(sorted(IMAGE_EXTS))}) in {' '.join(map(str, paths))}")
    return files


def predict_files(run_dir: Path, paths, device) -> list[dict]:
    """Top-3 digits with probabilities for each image, from the best K's fold ensemble."""
    files = image_files(paths)
    k = pick_k(run_dir)
    models = ensemble_for_k(run_dir, k, device)
    images = torch.from_numpy(np.stack([load_digit(str(f), str(f), "auto") for f in files]))
    probs = predict_images(models, images)
    print(f"predictions of the K={k} fold ensemble ({len(models)} models) of run {run_dir.name}:")
    out = []
    for f, p in zip(files, probs):
        top = torch.topk(p, 3)
        pairs = [(int(c), float(v)) for v, c in zip(top.values, top.indices)]
        print(f"  {f}: " + "  ".join(f"{c} ({v:.1%})" for c, v in pairs))
        out.append({"path": str(f), "probabilities": p.tolist(), "top3": pairs})
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="run name under runs/ or a run folder (default: runs/latest)")
    p.add_argument("--runs-dir", default=str(RUNS_DIR), help="(default: runs/)")
    p.add_argument("--index", action="append", default=[], metavar="FILE",
                   help="also score this index file (repeatable); reported under its file name")
    p.add_argument("--only", action="store_true", help="score only the --index files, not the default sets")
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="predict the digit in these image files or folders (top-3), then stop")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"], help="(default: auto)")
    p.add_argument("--batch-size", type=int, default=1000, help="inference batch size (default: 1000)")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        raise DataError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.only and not args.index:
        raise DataError("--only needs at least one --index FILE")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        device = resolve_device(args.device)
        run_dir = resolve_run(args.run, Path(args.runs_dir))
        if args.images:
            predict_files(run_dir, args.images, device)
            return 0
        start = time.time()
        files = [Path(f) for f in args.index] if args.only else default_index_files(args.index)
        results = score_run(run_dir, files, device, args.batch_size)
        json_path, csv_path = write_results(run_dir, results)
        print_results(results)
        print(f"\nscored {len(results['checkpoints'])} checkpoints in {time.time() - start:.1f}s; "
              f"wrote {json_path} and {csv_path}")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
