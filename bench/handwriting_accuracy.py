"""Handwritten-digit accuracy: plain resize vs MNIST-style normalisation, for one or more runs.

For each run, its best K's fold ensemble reads every original image twice:
  plain       grayscale, inverted to white-on-black, resized to 28x28 (what a naive loader does);
  normalised  handwriting.normalize_digit (crop, 20 px box, centre of mass), what this repo does.
Sets: the 35 shipped test originals, and a fresh set of stand-ins drawn here with another
seed (digits the models and the tuning of the normaliser never saw).

    python bench/handwriting_accuracy.py --runs RUN [RUN ...] [--fresh-per-label 10]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "data" / "handwritten"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dataset import open_image, to_white_on_black  # noqa: E402
from handwriting import IMAGE_EXTS, normalize_digit  # noqa: E402
from runs import resolve_run  # noqa: E402
from scoring import ensemble_for_k, pick_k, predict_images  # noqa: E402


def plain_resize(img: Image.Image) -> np.ndarray:
    return np.asarray(Image.fromarray(to_white_on_black(img)).resize((28, 28), Image.LANCZOS), dtype=np.uint8)


def load_set(folder: Path):
    """<label>/<image> -> (plain uint8 [N,28,28], normalised uint8 [N,28,28], labels [N])."""
    files = sorted(f for f in folder.glob("*/*") if f.suffix.lower() in IMAGE_EXTS)
    imgs = [open_image(str(f), str(f)) for f in files]
    plain = torch.from_numpy(np.stack([plain_resize(i) for i in imgs]))
    norm = torch.from_numpy(np.stack([normalize_digit(i, str(f)) for i, f in zip(imgs, files)]))
    return plain, norm, torch.tensor([int(f.parent.name) for f in files])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="run names or folders")
    p.add_argument("--fresh-per-label", type=int, default=10, help="fresh stand-ins per digit (default: 10)")
    p.add_argument("--fresh-seed", type=int, default=777)
    args = p.parse_args(argv)
    import make_standins  # the stand-in generator that made the shipped set

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "fresh"
        make_standins.draw_set(fresh, {d: args.fresh_per_label for d in range(10)},
                               np.random.default_rng([args.fresh_seed, 99]))
        sets = {"shipped test (35)": load_set(REPO / "data" / "handwritten" / "originals" / "test"),
                f"fresh stand-ins ({10 * args.fresh_per_label})": load_set(fresh)}
    print(f"{'run':<28} {'K':>2}  {'set':<24} {'plain resize':>13} {'normalised':>11}")
    for run in args.runs:
        run_dir = resolve_run(run)
        k = pick_k(run_dir)
        models = ensemble_for_k(run_dir, k)
        for name, (plain, norm, labels) in sets.items():
            acc = [(predict_images(models, x).argmax(1) == labels).float().mean().item() for x in (plain, norm)]
            n = len(labels)
            print(f"{run_dir.name:<28} {k:>2}  {name:<24} {acc[0]:>7.1%} {round(acc[0] * n):>3}/{n:<3}"
                  f"{acc[1]:>6.1%} {round(acc[1] * n):>3}/{n}")


if __name__ == "__main__":
    main()
