"""Faults: SIGKILL (mid-fold, mid-write, at random), Ctrl-C, a killed prepare, a damaged dataset cache,
a full disk, a read-only folder; and reproducibility (same seed = same bytes, other seed = other folds).

After each fault every file of the run/data folder must still be readable, the rerun must finish,
and its fold JSONs must equal those of the uninterrupted reference run.
"""
from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Callable

from .checks import Outcome, damaged, digests, expect_error, expect_ok, file_problem, fold_jsons, mtimes, scan, short
from .harness import DATASET, TEST, TRAIN, Proc, wait_for
from .inputs import Env, digits_index
from .registry import S, S_test_set, T, case, score_n


def _rewritten(run: Path, keep: dict) -> tuple[dict, list[str]]:
    """The fold files' mtimes now, and those of `keep` that changed since."""
    now = mtimes(run)
    return now, [f for f, t in keep.items() if now.get(f) != t]


def _finish_and_compare(env: Env, w: Path, o: Outcome, run: Path, keep: dict) -> Proc:
    """Rerun with the same --run: it must finish, leave finished folds alone, equal the reference."""
    p = env.run(TRAIN, *T(env, w))
    expect_ok(o, p)
    o.check(not any(run.rglob("*.tmp")), f"temporary files left after the resume: {list(run.rglob('*.tmp'))}")
    _, changed = _rewritten(run, keep)
    o.check(not changed, f"finished fold files were rewritten: {changed}")
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    o.check(summary.get("per_k", {}).get("2", {}).get("folds_done") == [0, 1], f"fold set after resume: {summary}")
    o.check(fold_jsons(run) == fold_jsons(env.ref_run()), "fold JSONs differ from the uninterrupted run")
    o.lost += damaged(scan(run))
    return p


def _kill_check(o: Outcome, run: Path, when: str) -> None:
    o.lost += [f"after {when}: {x}" for x in damaged(scan(run), allow_tmp=True)]


def _signal_when(env: Env, w: Path, o: Outcome, text: str, sig: int, too_late: str) -> Proc:
    """Train (the reference run exists first), send `sig` once stdout shows `text`, reap the process."""
    env.ref_run()
    c = env.start(TRAIN, *T(env, w))
    o.check(wait_for(lambda: text in c.out_text(), c), too_late)
    c.send(sig)
    return c.wait()


@case("SIGKILL in the middle of a fold, then resume", "resumes; fold 0 kept; JSON = uninterrupted")
def _kill_mid_fold(env: Env, w: Path, o: Outcome):
    run = w / "runs" / "r"
    p = _signal_when(env, w, o, "k2 fold 1 epoch 1/", signal.SIGKILL, "training ended before the kill point")
    o.check(p.rc == -signal.SIGKILL, f"exit status {p.rc} after SIGKILL")
    _kill_check(o, run, "the kill")
    o.check((run / "k2" / "fold0.pt").exists() and not (run / "k2" / "fold1.pt").exists(),
            "the kill did not land inside fold 1")
    keep = mtimes(run)
    r = _finish_and_compare(env, w, o, run, keep)
    o.check("resuming: 1 fold(s) already done, 1 to train" in r.out, f"resume plan: {r.out[-300:]}")
    o.seen = f"killed in fold 1; resume exit {r.rc}: 1 done + 1 trained, fold 0 untouched"


@case("SIGKILL while each checkpoint/JSON is being written", "every file readable; resume = uninterrupted")
def _kill_mid_write(env: Env, w: Path, o: Outcome):
    """fsync made slow (1 s) so the kill lands between writing the temp file and renaming it."""
    run = w / "runs" / "r"
    env.ref_run()
    keep: dict = {}
    caught = []
    for target in ("fold0.pt", "fold0.json", "fold1.pt", "fold1.json"):
        c = env.start(TRAIN, *T(env, w), inject={"kind": "slow_fsync", "seconds": 1.0})
        hit = wait_for(lambda: any((run / "k2").glob(f".{target}.*.tmp")), c)
        c.send(signal.SIGKILL)
        p = c.wait()
        o.check(hit and p.rc == -signal.SIGKILL, f"{target}: no temp file seen before the process ended ({p.rc})")
        o.check(not (run / "k2" / target).exists(), f"{target} exists: the kill landed after the rename")
        _kill_check(o, run, f"the kill writing {target}")
        caught.append(target)
        keep, changed = _rewritten(run, keep)
        o.check(not changed, f"a finished file was rewritten before {target}")
    r = _finish_and_compare(env, w, o, run, keep)
    o.check("removed temporary files" in r.out, "the resume did not report removing the killed writers' temp files")
    o.seen = f"killed mid-write of {', '.join(caught)}; resume exit {r.rc}, JSON = uninterrupted"


@case("SIGKILL at random moments (3 kills), then resume", "every file readable after each kill; resume = uninterrupted")
def _kill_random(env: Env, w: Path, o: Outcome):
    run = w / "runs" / "r"
    env.ref_run()
    rng = random.Random(20240601)
    keep: dict = {}
    moments = []
    for i in range(3):  # moments spread over the life of an uninterrupted run
        delay = rng.uniform(0.05, 1.1) * env.ref_seconds
        c = env.start(TRAIN, *T(env, w))
        wait_for(lambda: time.monotonic() - c.t0 > delay, c)
        c.send(signal.SIGKILL)
        p = c.wait()
        moments.append(f"{delay:.1f}s" + ("" if p.rc == -signal.SIGKILL else "(done)"))
        _kill_check(o, run, f"kill {i + 1} at {delay:.1f}s")
        keep, changed = _rewritten(run, keep)
        o.check(not changed, f"kill {i + 1}: a finished fold file was rewritten")
    r = _finish_and_compare(env, w, o, run, keep)
    o.seen = f"kills at {', '.join(moments)}; resume exit {r.rc}, JSON = uninterrupted"


@case("Ctrl-C (SIGINT) during training", "exit 130, one line naming --run r, no traceback")
def _ctrl_c(env: Env, w: Path, o: Outcome):
    run = w / "runs" / "r"
    p = _signal_when(env, w, o, "epoch 1/", signal.SIGINT, "training ended before Ctrl-C")
    lines = [ln for ln in p.err.splitlines() if ln.strip()]
    o.check(p.rc == 130, f"exit status {p.rc}, expected 130")
    o.check("Traceback" not in p.err, "traceback on stderr:\n" + p.err[-1500:])
    o.check(len(lines) == 1 and "--run r" in lines[0], f"expected one line with '--run r', got {lines!r}")
    o.seen = f"exit {p.rc}: {short(lines[-1] if lines else '')}"
    _kill_check(o, run, "Ctrl-C")
    o.check(not any(run.rglob("*.tmp")), "Ctrl-C left temporary files")
    seen = o.seen
    r = _finish_and_compare(env, w, o, run, mtimes(run, "k*/fold*.pt"))
    o.seen = f"{seen}; rerun exit {r.rc}, JSON = uninterrupted"


@case("dataset.py prepare killed half-way, rerun", "rerun completes: 600+200 digits, pixels = IDX")
def _prepare_killed(env: Env, w: Path, o: Outcome):
    import numpy as np

    import mnist
    from dataset import IndexDataset, read_index

    data = w / "data"
    args = ["prepare", "--mnist-dir", str(env.raw), "--data-dir", str(data)]

    def pngs() -> int:
        try:
            return sum(len(os.listdir(d)) for d in (data / "mnist" / "train").iterdir())
        except FileNotFoundError:
            return 0

    c = env.start(DATASET, *args)
    o.check(wait_for(lambda: pngs() >= 40, c, step=0.002), "prepare ended before the kill")
    c.send(signal.SIGKILL)
    p = c.wait()
    done_at_kill = pngs()
    o.check(p.rc == -signal.SIGKILL and not (data / "train.txt").exists(),
            f"the kill did not land while writing the train PNGs (exit {p.rc})")
    # After the kill: an index, where one exists, must be complete (images listed all present and sound).
    for idx in data.glob("*.txt"):
        why = file_problem(idx)
        o.check(why is None, f"after the kill: {idx.name}: {why}")
    r = env.run(DATASET, *args)
    expect_ok(o, r)
    for split, count in (("train", 600), ("test", 200)):
        samples = read_index(data / f"{split}.txt")
        o.check(len(samples) == count, f"{split}.txt lists {len(samples)} digits, expected {count}")
        ds = IndexDataset(data / f"{split}.txt", use_cache=False)
        images_name, labels_name, _ = mnist.SPLITS[split]
        raw_images = mnist.read_idx(mnist.find_idx_file(env.raw, images_name))
        raw_labels = mnist.read_idx(mnist.find_idx_file(env.raw, labels_name))
        o.check(np.array_equal(ds.images.numpy(), raw_images) and np.array_equal(ds.labels.numpy(), raw_labels),
                f"{split}: decoded digits differ from the IDX file")
    o.lost += damaged(scan(data))
    o.seen = f"killed after {done_at_kill} PNGs; rerun exit {r.rc}: 600+200 digits, pixels = IDX"


def _cache_case(name: str, damage: Callable[[Path], None], how: str):
    @case(f"dataset cache {name}", "warning, cache rebuilt, scores unchanged")
    def fn(env: Env, w: Path, o: Outcome):
        import dataset

        idx = digits_index(env, w / "set" / "digits.txt", 100)
        args = S(env, w, "--only", "--index", str(idx))
        first = env.run(TEST, *args)
        o.check(first.rc == 0, f"first scoring failed: {first.err[-500:]}")
        run = w / "runs" / "r"
        preds = lambda: {(e["k"], e["fold"]): e["scores"]["digits"]["pred"]  # noqa: E731
                         for e in json.loads((run / "test_results.json").read_text())["checkpoints"]}
        before = preds()
        cpath = dataset.cache_path(idx, "auto")
        o.check(cpath.is_file(), "no cache written by the first scoring")
        damage(cpath)
        p = env.run(TEST, *args)
        expect_ok(o, p, warning="damaged dataset cache")
        o.check(preds() == before, "scores changed: the damaged cache was used")
        samples = dataset.read_index(idx)
        key = dataset.cache_key(idx, samples, "auto")
        o.check(dataset.load_cache(cpath, key, len(samples)) is not None, "the cache was not rebuilt")
        o.lost += damaged(scan(w / "set")) + damaged(scan(run))
        o.seen += f" [{how}; rebuilt, scores equal]"
    return fn


def _truncate_half(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_middle(p: Path):
    data = bytearray(p.read_bytes())
    mid = len(data) // 2  # inside images.npy, the bulk of the file
    for i in range(mid, mid + 64):
        data[i] ^= 0xFF
    p.write_bytes(bytes(data))


def _forge_pixels(p: Path):
    """A well-formed cache, key intact, every pixel 0: only the content checksum can tell."""
    import numpy as np

    with np.load(p) as z:
        parts = {k: z[k] for k in z.files}
    parts["images"] = np.zeros_like(parts["images"])
    with open(p, "wb") as f:
        np.savez(f, **parts)


_cache_case("truncated", _truncate_half, "cut to half")
_cache_case("bytes flipped", _flip_middle, "64 bytes flipped")
_cache_case("forged (valid file, pixels zeroed)", _forge_pixels, "valid zip, checksum wrong")


@case("disk full while writing a checkpoint", "one-line error, no partial file")
def _enospc_checkpoint(env: Env, w: Path, o: Outcome):
    run = w / "runs" / "r"
    p = env.run(TRAIN, *T(env, w), inject={"kind": "enospc", "dir": str(run / "k2")})
    expect_error(o, p, "fold0.pt", "No space left on device")
    o.check(not (run / "k2" / "fold0.pt").exists(), "a fold0.pt was left")
    o.lost += damaged(scan(run))


@case("disk full at run start (config.json), then rerun", "one-line error, no partial file; rerun works")
def _enospc_config(env: Env, w: Path, o: Outcome):
    run = w / "runs" / "r"
    env.ref_run()
    p = env.run(TRAIN, *T(env, w), inject={"kind": "enospc", "dir": str(run)})
    line = expect_error(o, p, "config.json", "No space left on device")
    o.check(not (run / "config.json").exists(), "a config.json was left")
    o.lost += damaged(scan(run))
    seen = o.seen
    _finish_and_compare(env, w, o, run, {})
    o.seen = seen + "; rerun = reference" if line else seen


@case("disk full while test.py writes results", "one-line error, no partial results, run intact")
def _enospc_results(env: Env, w: Path, o: Outcome):
    args = S_test_set(env, w)
    run = w / "runs" / "r"
    before = digests(run)
    p = env.run(TEST, *args, inject={"kind": "enospc", "dir": str(run)})
    expect_error(o, p, "test_results", "No space left on device")
    o.check(digests(run) == before, f"the run folder changed: {sorted(set(digests(run)) ^ set(before))}")
    o.lost += damaged(scan(run))


@case("read-only run folder (resume)", "one-line error, nothing changed")
def _readonly_run(env: Env, w: Path, o: Outcome):
    run = env.run_copy(w)
    for f in (run / "k2").glob("fold1.*"):
        f.unlink()
    before = digests(run)
    simulated = os.geteuid() == 0  # root ignores permission bits: simulate EROFS inside the process
    try:
        if simulated:
            p = env.run(TRAIN, *T(env, w), inject={"kind": "readonly", "dir": str(run)})
        else:
            for d in (run, run / "k2"):
                d.chmod(0o555)
            p = env.run(TRAIN, *T(env, w))
    finally:
        for d in (run, run / "k2"):
            d.chmod(0o755)
    expect_error(o, p, "fold1.pt", "cannot write")
    o.check(digests(run) == before, "the read-only run folder changed")
    o.lost += damaged(scan(run))
    o.seen += " [EROFS simulated: running as root]" if simulated else " [chmod 555]"


@case("run folder blocked: k2 is a file", "one-line error, no partial file")
def _k2_file(env: Env, w: Path, o: Outcome):
    run = w / "runs" / "r"
    run.mkdir(parents=True)
    (run / "k2").write_text("not a folder\n")
    p = env.run(TRAIN, *T(env, w))
    expect_error(o, p, "fold0.pt", "cannot write")
    o.check((run / "k2").read_text() == "not a folder\n", "the blocking file was changed")
    o.lost += damaged(scan(run))


@case("read-only data folder (cache cannot be written)", "warning, exit 0")
def _readonly_cache(env: Env, w: Path, o: Outcome):
    idx = digits_index(env, w / "set" / "digits.txt", 20)
    args = S(env, w, "--only", "--index", str(idx))
    o.watch(w / "set")
    p = env.run(TEST, *args, inject={"kind": "readonly", "dir": str(w / "set")})
    expect_ok(o, p, warning="cannot write dataset cache")
    o.check(not (w / "set" / ".cache").exists(), "a cache folder was created in the read-only folder")
    o.check(score_n(w / "runs" / "r", "digits") == 20, "the digits were not scored")


# -- reproducibility
@case("same seed, fresh interpreter", "byte-identical fold JSONs")
def _same_seed(env: Env, w: Path, o: Outcome):
    ref = fold_jsons(env.ref_run())
    p = env.run(TRAIN, *T(env, w), fresh=True)
    expect_ok(o, p)
    mine = fold_jsons(w / "runs" / "r")
    o.check(len(mine) == 2 and mine == ref, f"fold JSONs differ: {sorted(mine)} vs {sorted(ref)}")
    o.seen = f"exit {p.rc}: {len(mine)} fold JSONs, byte-identical" if mine == ref else "JSONs differ"


@case("different seed", "different folds and results")
def _other_seed(env: Env, w: Path, o: Outcome):
    ref = fold_jsons(env.ref_run())
    p = env.run(TRAIN, *T(env, w, "--seed", "1"))
    expect_ok(o, p)
    mine = fold_jsons(w / "runs" / "r")
    o.check(len(mine) == 2 and all(mine[f] != ref.get(f) for f in mine), "seed 1 gave the same fold JSONs as seed 0")
    o.seen = f"exit {p.rc}: all {len(mine)} fold JSONs differ"
