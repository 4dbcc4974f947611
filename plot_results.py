"""Draw a K-fold run: which fold count K is best, how each fold learned, and what the best
K's fold ensemble gets wrong on the MNIST test set and on your handwritten digits.

    python plot_results.py                    # newest run -> runs/<run>/plots/*.png + summary.md
    python plot_results.py --run NAME --show  # another run, and open the figures in windows

Reads what train_kfold.py and test.py wrote. When test_results.json is missing, older than the
newest checkpoint, or scored other checkpoints than the run holds now, the run is scored first
(like `python test.py --run NAME`, keeping the sets it was scored on before).
"""
from __future__ import annotations

import argparse
import io
import math
import re
import sys
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import pyplot as plt  # main() picks the backend: Agg unless --show
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.ticker import (FuncFormatter, LogLocator, MaxNLocator, NullFormatter, PercentFormatter,
                               StrMethodFormatter)
from PIL import Image, ImageOps

from dataset import DataError, IndexDataset, atomic_write_bytes, atomic_write_text, open_image
from runs import RUNS_DIR, fold_metrics_path, list_checkpoints, load_checkpoint, read_json, resolve_run
from scoring import (DEFAULT_SET_NAMES, HANDWRITTEN_TEST, default_index_files, expected_folds, score_run,
                     write_results)

DPI = 130
STYLE = {"font.size": 10, "axes.titlesize": 11, "figure.titlesize": 13, "legend.fontsize": 9}
FOLD_COLOURS = matplotlib.colormaps["tab10"].colors
OK_GREEN, BAD_RED = "#1a7f37", "#cf222e"


# ---------------------------------------------------------------- reading (and if needed, scoring) a run

def stale_reason(run_dir: Path, found: dict) -> str | None:
    """Why test_results.json can't be used as it is, or None when it is current."""
    path = run_dir / "test_results.json"
    if not path.exists():
        return "no test_results.json yet"
    newest = max(p.stat().st_mtime for folds in found.values() for p in folds.values())
    if path.stat().st_mtime < newest:
        return "test_results.json is older than the newest checkpoint"
    scored = {(e.get("k"), e.get("fold")) for e in read_json(path).get("checkpoints", [])}
    if scored != {(k, f) for k, folds in found.items() for f in folds}:
        return "test_results.json scored other checkpoints than the run holds now"
    return None


def index_files_to_score(run_dir: Path, extra) -> list[Path]:
    """--index files; else the sets scored before (if their index files exist) plus test.py's defaults."""
    if extra:
        return [Path(f) for f in extra]
    old = {}
    if (run_dir / "test_results.json").exists():
        old = {n: Path(s["index"]) for n, s in read_json(run_dir / "test_results.json")["sets"].items()}
    files = {n: p for n, p in old.items() if p.exists()}
    if not files:
        return default_index_files()
    known = {p.resolve() for p in files.values()}
    for p, name in DEFAULT_SET_NAMES.items():
        if name not in files and p.exists() and p.resolve() not in known:
            files[name] = p
    return list(files.values())


def fold_metrics(run_dir: Path, k: int, fold: int, checkpoint: Path) -> dict:
    """k<K>/fold<i>.json, or the metrics inside the checkpoint if that file is missing."""
    path = fold_metrics_path(run_dir, k, fold)
    return read_json(path) if path.exists() else load_checkpoint(checkpoint)["metrics"]


def load_run(run_dir: Path, index_files=(), device="cpu", rescore: bool = False) -> dict:
    """Everything the figures need: results (scored first when needed), fold metrics, missing folds."""
    run_dir = Path(run_dir)
    found = list_checkpoints(run_dir)
    if not found:
        raise DataError(f"{run_dir}: no checkpoints (k<K>/fold<i>.pt); train with `python train_kfold.py`")
    reason = "--rescore" if rescore else stale_reason(run_dir, found)
    if reason:
        files = index_files_to_score(run_dir, index_files)
        print(f"scoring run {run_dir.name} first ({reason}) on {', '.join(map(str, files))}")
        write_results(run_dir, score_run(run_dir, files, device))
    results = read_json(run_dir / "test_results.json")
    if not {"sets", "per_k", "best_k", "all_folds_ensemble", "answer"} <= set(results):
        raise DataError(f"{run_dir / 'test_results.json'}: not written by this test.py; rerun with --rescore")
    folds = {k: {f: fold_metrics(run_dir, k, f, p) for f, p in fs.items()} for k, fs in found.items()}
    missing = {k: m for k, m in expected_folds(run_dir, found).items() if m}
    sets = results["sets"]  # MNIST's test set: by its name, else the largest set that isn't handwritten
    hand = next((n for n in sorted(sets, key=lambda n: n != "handwritten_test") if "handwritten" in n), None)
    mnist = "mnist_test" if "mnist_test" in sets else max((n for n in sets if n != hand), default=hand,
                                                           key=lambda n: sets[n]["n"])
    best = results["best_k"][mnist]["by_mean_fold_accuracy"]
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else {}
    return {"dir": run_dir, "name": run_dir.name, "results": results, "folds": folds, "missing": missing,
            "mnist": mnist, "hand": hand, "best_k": best, "config": config}


def ensemble(run: dict, k, name: str) -> dict:
    return run["results"]["per_k"][str(k)]["sets"][name]["ensemble"]


def val_mean_std(accs) -> tuple[float, float]:
    """Mean and sample std (ddof=1, as summary.json and test.py report it) of fold accuracies."""
    return float(np.mean(accs)), float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0


# ---------------------------------------------------------------- figures

def _percent_axis(ax, values, headroom=0.1):
    """A y-range fitted to the data (0.1% differences stay visible), ticks in percent."""
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = max(0.08 * (hi - lo), 0.001)
    top = hi + pad + headroom * max(hi - lo, 0.01)
    ax.set_ylim(lo - pad, min(top, 1.0 + 2 * pad + headroom * max(hi - lo, 0.01) / 2))
    span = hi - lo + 2 * pad
    d = 2 if span < 0.02 else 1 if span < 0.2 else 0  # no tick label above 100%
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "" if v > 1.000001 else f"{v:.{d}%}"))
    ax.grid(axis="y", alpha=0.3)


def plot_kfold_accuracy(run: dict):
    """Per K: each fold's accuracy (dots), mean ± std, and the fold ensemble, on validation and each test set."""
    rng, ks = np.random.default_rng(0), sorted(run["folds"])
    sets = list(dict.fromkeys(n for n in (run["mnist"], run["hand"]) if n))
    panels = [("Cross-validation: final validation accuracy", None)]
    panels += [(f"{n} ({run['results']['sets'][n]['n']} digits): test accuracy", n) for n in sets]
    width = max(3.8, 1.5 * len(ks) + 1.0)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4.8), layout="constrained", squeeze=False)
    for ax, (title, name) in zip(axes[0], panels):
        shown = []
        for i, k in enumerate(ks):
            accs = ([m["final_val_acc"] for m in run["folds"][k].values()] if name is None
                    else run["results"]["per_k"][str(k)]["sets"][name]["fold_accuracy"])
            (mean, std), x = val_mean_std(accs), i - 0.12
            ax.scatter(x + rng.uniform(-0.06, 0.06, len(accs)), accs, s=22, color="#4c72b0", alpha=0.75,
                       zorder=3, label="one fold's model" if i == 0 else None)
            bar = [[min(std, mean)], [min(std, 1.0 - mean)]]  # accuracy stays within 0..100%
            ax.errorbar(x, mean, yerr=bar, fmt="_", ms=22, mew=2.2, color="black", capsize=5, elinewidth=1.4,
                        zorder=4, label="mean ± std over folds" if i == 0 else None)
            ax.annotate(f"{mean:.2%}", (x, mean), xytext=(-15, 0), textcoords="offset points",
                        ha="right", va="center", fontsize=8.5)
            shown += accs + [mean - bar[0][0], mean + bar[1][0]]
            if name is not None:
                acc = ensemble(run, k, name)["accuracy"]
                ax.scatter(i + 0.2, acc, marker="D", s=55, color=BAD_RED, zorder=5,
                           label="fold ensemble (softmax averaged over the K models)" if i == 0 else None)
                ax.annotate(f"{acc:.2%}", (i + 0.2, acc), xytext=(0, 7), textcoords="offset points",
                            ha="center", va="bottom", fontsize=8.5, color=BAD_RED)
                shown.append(acc)
        _percent_axis(ax, shown)
        ax.set_xticks(range(len(ks)), [f"K={k}" + (f"\n{len(run['folds'][k])}/{k} folds" if k in run["missing"]
                                                    else "") for k in ks])
        ax.set_xlim(-0.6, len(ks) - 0.4)
        ax.set_title(title)
        ax.set_ylabel("accuracy")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    fig.suptitle(f"Run {run['name']}: which fold count K is best?  (best K on {run['mnist']} by mean "
                 f"fold accuracy: {run['best_k']})")
    return fig


def plot_learning_curves(run: dict):
    """One column per K: loss (top) and accuracy (bottom) per epoch; train solid, validation dashed."""
    ks = sorted(run["folds"])
    fig, axes = plt.subplots(2, len(ks), figsize=(max(4.2 * len(ks), 6), 6.6), layout="constrained",
                             sharey="row", squeeze=False)
    for col, k in enumerate(ks):
        for fold, m in run["folds"][k].items():
            ep = [e["epoch"] for e in m["epochs"]]
            few, c = len(ep) <= 12, FOLD_COLOURS[fold % len(FOLD_COLOURS)]
            for row, key in enumerate(("loss", "acc")):
                axes[row][col].plot(ep, [e[f"train_{key}"] for e in m["epochs"]], "-", color=c,
                                    marker="o" if few else None, ms=4)
                axes[row][col].plot(ep, [e[f"val_{key}"] for e in m["epochs"]], "--", color=c,
                                    marker="s" if few else None, ms=5, mfc="none")
        gone = ", ".join(map(str, run["missing"].get(k, [])))
        axes[0][col].set_title(f"K={k}: {len(run['folds'][k])} of {k} folds, missing {gone}" if gone
                               else f"K={k}: {k} folds")
        axes[1][col].set_xlabel("epoch")
        last = max(len(m["epochs"]) for m in run["folds"][k].values())
        for row in (0, 1):
            if last <= 12:  # whole epochs only (a locator would put 0.8 and 1.2 around a single epoch)
                axes[row][col].set_xticks(range(1, last + 1))
            else:
                axes[row][col].xaxis.set_major_locator(MaxNLocator(integer=True))
            axes[row][col].set_xlim(0.7, last + 0.3)
            axes[row][col].grid(alpha=0.3)
    axes[0][0].set_ylabel("loss (cross-entropy)")
    axes[1][0].set_ylabel("accuracy")
    axes[1][0].yaxis.set_major_formatter(PercentFormatter(1.0))
    n_folds = max(max(f) for f in run["folds"].values()) + 1
    handles = [Line2D([], [], color=FOLD_COLOURS[f % 10], lw=2.5, label=f"fold {f}") for f in range(n_folds)]
    handles += [Line2D([], [], color="grey", ls="-", marker="o", label="training"),
                Line2D([], [], color="grey", ls="--", marker="s", mfc="none", label="validation")]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    fig.suptitle(f"Run {run['name']}: learning curves of every fold")
    return fig


def plot_confusion(run: dict):
    """The best K's fold ensemble on the MNIST test set: counts; correct (diagonal) green, errors red."""
    score, k = ensemble(run, run["best_k"], run["mnist"]), run["best_k"]
    cm = np.array(score["confusion"])
    diag = np.eye(10, dtype=bool)
    errors = np.ma.masked_where(diag | (cm == 0), cm)
    fig, ax = plt.subplots(figsize=(8.4, 7.2), layout="constrained")
    ax.imshow(np.ma.masked_where(~diag, np.ones_like(cm)), cmap="Greens", vmin=0, vmax=4)
    im = ax.imshow(errors, cmap="Reds", norm=LogNorm(vmin=0.6, vmax=max(2, int(errors.max() or 2)) * 1.5))
    for t in range(10):
        for p in range(10):
            if cm[t, p] or t == p:
                dark = t != p and im.norm(cm[t, p]) > 0.6
                ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=9,
                        fontweight="bold" if t == p else "normal",
                        color="#0b3d1a" if t == p else "white" if dark else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit")
    per_class = [f"{a:.1%}" if a is not None else "-" for a in score["per_class_accuracy"]]
    right = ax.secondary_yaxis("right")
    right.set_yticks(range(10), per_class)
    right.set_ylabel("correct per true digit")
    bar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02, label="wrong predictions (log scale)")
    bar.ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    bar.ax.yaxis.set_major_formatter(StrMethodFormatter("{x:.0f}"))
    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_title(f"Run {run['name']}: K={k} fold ensemble on {run['mnist']}\n{score['correct']}/{score['n']} "
                 f"correct ({score['accuracy']:.2%}), {score['n'] - score['correct']} errors (red; diagonal green)")
    return fig


def _originals(index: Path) -> dict[str, Path]:
    """Imported-digit name (lower case) -> the user's original image, found via the index's
    'imported from ...' header or data/handwritten/originals/<set>/."""
    roots = [index.parent / "originals" / index.stem]
    head = "".join(line for line in index.read_text(encoding="utf-8").splitlines(True) if line.startswith("#"))
    if m := re.search(r"imported from (.+?) by handwriting", head):
        roots.insert(0, index.parent / m.group(1))
    for root in roots:
        if root.is_dir():
            out = {}
            for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
                stem = f.stem if f.parent == root else f"{f.parent.name}_{f.stem}"
                out[re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lower()] = f
            return out
    return {}


def _pair_image(original: Path | None, digit: np.ndarray, side: int = 112) -> np.ndarray:
    """RGB: the user's image fitted into side x side (if found) | the 28x28 digit, enlarged."""
    big = np.repeat(np.repeat(digit, side // 28, 0), side // 28, 1)
    right = np.stack([big] * 3, -1)
    if original is None:
        return right
    try:
        img = open_image(str(original), str(original))
    except DataError:
        return right
    canvas = np.full((side, side, 3), 205, np.uint8)  # grey margins, so the photo's own edges show
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
    img = img.convert("RGB")
    scale = side / max(img.size)  # fit (small drawings are enlarged too)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    a = np.asarray(img)
    y, x = (side - a.shape[0]) // 2, (side - a.shape[1]) // 2
    canvas[y:y + a.shape[0], x:x + a.shape[1]] = a
    return np.concatenate([canvas, np.full((side, 6, 3), 255, np.uint8), right], 1)


def plot_handwritten(run: dict):
    """Every handwritten digit as given and as normalised, with the best K ensemble's prediction."""
    name = run["hand"]
    if name is None:
        return None
    s = run["results"]["sets"][name]
    score, index = ensemble(run, run["best_k"], name), Path(s["index"])
    ds = IndexDataset(index)
    originals = _originals(index) if index.exists() else {}
    conf = score.get("confidence") or [None] * s["n"]
    n, cols = s["n"], min(6, s["n"])
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.05 * cols, 1.35 * rows + 0.9), layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set(xticks=[], yticks=[])
        if i >= n:
            ax.set_axis_off()
            continue
        stem = Path(ds.paths[i]).stem.lower()
        original = originals.get(stem) or originals.get(re.sub(r"-\d+$", "", stem))
        true, pred = s["labels"][i], score["pred"][i]
        ax.imshow(_pair_image(original, ds.images[i].numpy()), cmap="gray")
        colour = OK_GREEN if true == pred else BAD_RED
        ax.set_title(f"true {true}, pred {pred}" + (f" ({conf[i]:.0%})" if conf[i] is not None else ""),
                     color=colour, fontsize=9, fontweight="normal" if true == pred else "bold")
        for spine in ax.spines.values():
            spine.set_color(colour if true != pred else "#bbbbbb")
            spine.set_linewidth(3 if true != pred else 0.8)
    found = sum(1 for p in ds.paths if Path(p).stem.lower() in originals)
    how = "left: your image, right: 28×28 as the model sees it" if found else "28×28 as the model sees it"
    fig.suptitle(f"Run {run['name']}: K={run['best_k']} fold ensemble on {name}: {score['correct']}/{n} correct "
                 f"({score['accuracy']:.1%}); wrong in red\n({how}; confidence = ensemble's top probability)")
    return fig


def plot_misclassified(run: dict, limit: int = 64):
    """The MNIST test digits the best K's ensemble gets wrong (the first `limit`, in index order)."""
    s = run["results"]["sets"][run["mnist"]]
    pred = ensemble(run, run["best_k"], run["mnist"])["pred"]
    wrong = [i for i, (t, p) in enumerate(zip(s["labels"], pred)) if t != p]
    if not wrong:
        return None
    images = IndexDataset(s["index"]).images
    shown = wrong[:limit]
    cols = min(8, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols + 0.4, 1.4 * rows + 0.9), layout="constrained",
                             squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, shown):
        ax.imshow(images[i].numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{s['labels'][i]} → {pred[i]}", color=BAD_RED, fontsize=9)
    more = f"; the first {len(shown)} shown" if len(wrong) > len(shown) else ""
    fig.suptitle(f"Run {run['name']}: {len(wrong)} of {s['n']} {run['mnist']} digits the K={run['best_k']} "
                 f"ensemble gets wrong{more}\n(title: true → predicted)")
    return fig


# ---------------------------------------------------------------- summary and CLI

def summary_markdown(run: dict, images: list[str]) -> str:
    """The K table, the answer, per-set accuracies and every figure, as GitHub-flavoured Markdown."""
    r, mn, hw, cfg = run["results"], run["mnist"], run["hand"], run["config"]
    pm = lambda mean, std, n: f"{mean:.2%} ± {std:.2%}" if n > 1 else f"{mean:.2%} (one fold)"  # noqa: E731
    lines = [f"# Run `{run['name']}`", ""]
    if cfg:
        lines += [f"Model {cfg.get('model')}, {cfg.get('epochs')} epochs, lr {cfg.get('lr')}, schedule "
                  f"{cfg.get('schedule')}, augment {cfg.get('augment')}, {cfg.get('n_train_base')} training digits.", ""]
    head = ["K", "folds", "validation accuracy (mean ± std)", f"{mn}: fold mean ± std", f"{mn}: ensemble"]
    head += [f"{hw}: ensemble"] if hw else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in sorted(run["folds"]):
        n, t = len(run["folds"][k]), r["per_k"][str(k)]["sets"][mn]
        row = [f"**{k}**" if k == run["best_k"] else str(k), f"{n}/{k}",
               pm(*val_mean_std([m["final_val_acc"] for m in run["folds"][k].values()]), n),
               pm(t["mean_accuracy"], t["std_accuracy"], n), f"{t['ensemble']['accuracy']:.2%}"]
        if hw:
            e = ensemble(run, k, hw)
            row.append(f"{e['correct']}/{e['n']} ({e['accuracy']:.1%})")
        lines.append("| " + " | ".join(row) + " |")
    lines += [""] + [f"- K={k} is missing fold(s) {', '.join(map(str, m))}: its row uses the folds that exist."
                     for k, m in run["missing"].items()]
    lines += ["", "## Answer", ""] + [f"- {a}" for a in r["answer"]]
    lines += ["", "## Per set", "", "| set | digits | all-folds ensemble | best K (mean fold) | best K (ensemble) |",
              "|---|---|---|---|---|"]
    for n, s in r["sets"].items():
        a, b = r["all_folds_ensemble"][n], r["best_k"][n]
        lines.append(f"| {n} | {s['n']} | {a['correct']}/{a['n']} ({a['accuracy']:.2%}) | "
                     f"{b['by_mean_fold_accuracy']} | {b['by_ensemble_accuracy']} |")
    lines += ["", "## Figures", ""]
    for img in images:
        lines += [f"### {Path(img).stem.replace('_', ' ')}", "", f"![{Path(img).stem}]({img})", ""]
    return "\n".join(lines)


FIGURES = {"kfold_accuracy.png": plot_kfold_accuracy, "learning_curves.png": plot_learning_curves,
           "confusion_matrix.png": plot_confusion, "handwritten_predictions.png": plot_handwritten,
           "misclassified_test.png": plot_misclassified}


def write_plots(run: dict, out_dir: Path, keep_open: bool = False) -> list[Path]:
    """Draw every figure into out_dir (atomically) and summary.md beside them; returns the paths."""
    written = []
    for fname, draw in FIGURES.items():
        with matplotlib.rc_context(STYLE):
            fig = draw(run)
            if fig is None:
                why = "the run has no handwritten set" if "handwritten" in fname else "no digit is wrong"
                print(f"note: skipped {fname}: {why}")
                continue
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI)
        atomic_write_bytes(out_dir / fname, buf.getvalue())
        written.append(out_dir / fname)
        if not keep_open:
            plt.close(fig)
    atomic_write_text(out_dir / "summary.md", summary_markdown(run, [p.name for p in written]))
    return written + [out_dir / "summary.md"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="run name under runs/ or a run folder (default: runs/latest)")
    p.add_argument("--runs-dir", default=str(RUNS_DIR), help="(default: runs/)")
    p.add_argument("--out", help="folder for the figures (default: runs/<run>/plots)")
    p.add_argument("--show", action="store_true", help="also open the figures in windows")
    p.add_argument("--rescore", action="store_true",
                   help="score the run again even if test_results.json is current")
    p.add_argument("--index", action="append", default=[], metavar="FILE",
                   help="when scoring: score these index files (repeatable) instead of the previous/default sets")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="for scoring (default: auto)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.show:
        matplotlib.use("Agg")
    try:
        from engine import resolve_device

        run_dir = resolve_run(args.run, Path(args.runs_dir))
        run = load_run(run_dir, args.index, resolve_device(args.device), args.rescore)
        for k, m in run["missing"].items():
            print(f"note: K={k} is missing fold(s) {', '.join(map(str, m))}; drawing the "
                  f"{len(run['folds'].get(k, {}))} that exist")
        if run["hand"] is None and HANDWRITTEN_TEST.exists():
            print("note: data/handwritten/test.txt exists but this run was scored without it; "
                  "add --rescore to include it")
        for path in write_plots(run, Path(args.out) if args.out else run_dir / "plots", keep_open=args.show):
            print(path)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.show:
        plt.show()
    return 0


if __name__ == "__main__":
    sys.exit(main())
