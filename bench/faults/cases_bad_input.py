"""Bad input: malformed indexes and images, bad option values, checkpoints that are not what they claim.

Each must end in one `error: ...` line naming the file (and line), or, where the input is usable,
exit 0 with a `warning: ...`.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

from .checks import Outcome, expect_error, expect_ok, damaged, fold_jsons, mtimes, scan, short
from .harness import DATASET, TEST, TRAIN
from .inputs import Env, Payload, bad_index, digits_index, write_gray_png, write_index, zero_size_png
from .registry import S, S_test_set, T, case, err_case, score_n

E1 = "error naming file:line"


def _line3(fmt: str):
    """Train on an index whose line 3 is `fmt` filled in with the path of a prepared digit."""
    return lambda env, w: T(env, w, train=bad_index(env, w, fmt.format(env.images("train", 1, 5)[0][0])))


# -- malformed index lines (train_kfold.py --train INDEX)
err_case("index line without a label", E1, TRAIN, _line3("{}"), "bad.txt:3", "path,label")
err_case("label 10", E1, TRAIN, _line3("{},10"), "bad.txt:3", "'10'")
err_case("label -1", E1, TRAIN, _line3("{},-1"), "bad.txt:3", "'-1'")
err_case("label 'seven'", E1, TRAIN, _line3("{} seven"), "bad.txt:3", "'seven'")
err_case("image file missing", E1 + " and image", TRAIN,
         lambda env, w: T(env, w, train=bad_index(env, w, f"{w / 'nope.png'},3")),
         "bad.txt:3", "nope.png", "not found")


def _truncated_png(env: Env, w: Path) -> list[str]:
    data = env.images("train", 1, 7)[0][0].read_bytes()
    (w / "trunc.png").write_bytes(data[: len(data) // 2])
    return T(env, w, train=bad_index(env, w, f"{w / 'trunc.png'},3"))


err_case("truncated PNG", E1 + " and image", TRAIN, _truncated_png, "bad.txt:3", "trunc.png")


def _text_png(env: Env, w: Path) -> list[str]:
    (w / "notes.png").write_text("this is not an image\n")
    return T(env, w, train=bad_index(env, w, f"{w / 'notes.png'},3"))


err_case("text file named .png", E1 + " and image", TRAIN, _text_png, "bad.txt:3", "notes.png", "not an image")
err_case("empty index", "error naming the index", TRAIN,
         lambda env, w: T(env, w, train=write_index(w / "empty.txt", [], header=False)), "empty.txt", "no samples")
err_case("index of only comments", "error naming the index", TRAIN,
         lambda env, w: T(env, w, train=write_index(w / "comments.txt", ["# one", "  # two", ""])),
         "comments.txt", "no samples")


def _conflicting_dup(env: Env, w: Path) -> list[str]:
    (a, la), (b, lb) = env.images("train", 2)
    return T(env, w, train=write_index(w / "bad.txt", [f"{a},{la}", f"{b},{lb}", f"{b},{(lb + 1) % 10}"]))


err_case("same path with two labels", "error naming both lines", TRAIN, _conflicting_dup, "bad.txt:4", "line 3")


def _non_utf8(env: Env, w: Path) -> list[str]:
    (a, la), (b, lb) = env.images("train", 2)
    idx = w / "bad.txt"
    idx.write_bytes(f"# header\n{a},{la}\n".encode() + b"caf\xe9.png,3\n" + f"{b},{lb}\n".encode())
    return T(env, w, train=idx)


err_case("non-UTF-8 bytes in an index", E1, TRAIN, _non_utf8, "bad.txt:3", "UTF-8")
err_case("index file missing", "error naming the index", TRAIN,
         lambda env, w: T(env, w, train=w / "missing.txt"), "missing.txt", "not found")
err_case("index path is a folder", "error naming the index", TRAIN,
         lambda env, w: T(env, w, train=(w / "folder.txt").mkdir() or w / "folder.txt"), "folder.txt")
err_case("--extra-train index with label 10", E1, TRAIN,
         lambda env, w: T(env, w, "--extra-train", bad_index(env, w, f"{env.images('test', 1)[0][0]},10", "mine.txt")),
         "mine.txt:3", "'10'")

# -- images the loader must refuse
err_case("1x1 image", E1 + ": too small", TRAIN,
         lambda env, w: T(env, w, train=bad_index(env, w, f"{write_gray_png(w / 'dot.png', 1, 1, 255)},1")),
         "bad.txt:3", "dot.png", "too small")
err_case("blank 40x40 image", E1 + ": blank", TRAIN,
         lambda env, w: T(env, w, train=bad_index(env, w, f"{write_gray_png(w / 'blank.png', 40, 40, 0)},1")),
         "bad.txt:3", "blank.png", "blank")


@case("0x0 PNG (PIL cannot write one: header by hand)", E1)
def _zero_png(env: Env, w: Path, o: Outcome):
    refusal = zero_size_png(w / "empty.png")
    args = T(env, w, train=bad_index(env, w, f"{w / 'empty.png'},1"))
    o.watch(w)
    p = env.run(TRAIN, *args)
    expect_error(o, p, "bad.txt:3", "empty.png")
    o.seen += f" [{short(refusal, 40)}]"


@case("10,000x10,000 PNG", E1 + ", refused before decoding")
def _huge_png(env: Env, w: Path, o: Outcome):
    control = T(env, w / "control", train=bad_index(env, w / "control", f"{write_gray_png(w / 'dot.png', 1, 1)},1"))
    args = T(env, w, train=bad_index(env, w, f"{env.huge_png()},1"))
    o.watch(w)
    base = env.run(TRAIN, *control)
    p = env.run(TRAIN, *args)
    expect_error(o, p, "bad.txt:3", "huge_10000x10000.png", "10000x10000", "limit")
    grew_mb = (p.maxrss_kb - base.maxrss_kb) / 1024
    # Decoding 10^8 grey pixels needs 95 MB: peak memory must stay near that of a 1x1 image.
    o.check(grew_mb < 50, f"peak memory {grew_mb:.0f} MB above the 1x1 case: the image was decoded")
    o.seen += f" [peak RSS +{grew_mb:.0f} MB vs 1x1]"


# -- command-line values
for _opts, _needle, _option in [
    (("--folds", "1"), ("K >= 2",), None),
    (("--folds", "0"), ("K >= 2",), None),
    (("--k", "5", "--fold", "7"), ("--fold 7", "0..4"), None),
    (("--batch-size", "0"), (), "--batch-size"),
    (("--lr", "-1"), (), "--lr"),
    (("--epochs", "0"), (), "--epochs"),
    (("--limit", "5"), ("--limit",), None),
    (("--limit", "595"), ("--limit",), None),
    (("--folds", "50"), ("50",), None),
    (("--device", "mps"), ("mps",), None),
]:
    err_case(" ".join(_opts), "argparse error naming the option, exit 2" if _option else "one-line error",
             TRAIN, lambda env, w, _o=_opts: T(env, w, *_o), *_needle, option=_option)

err_case("test.py --batch-size 0", "one-line error", TEST, lambda env, w: S(env, w, "--batch-size", "0"),
         "--batch-size")
err_case("test.py --run that does not exist", "one-line error", TEST,
         lambda env, w: ["--run", "nope", "--runs-dir", str(w / "runs"), "--device", "cpu"], "nope")
err_case("test.py --images of a missing file", "one-line error naming it", TEST,
         lambda env, w: S(env, w, "--images", str(w / "ghost.png")), "ghost.png")
err_case("test.py --images of a 1x1 image", "one-line error naming it", TEST,
         lambda env, w: S(env, w, "--images", str(write_gray_png(w / "dot.png", 1, 1, 255))), "dot.png", "too small")


# -- checkpoints that are not what they claim
def _mlp_checkpoint(env: Env, w: Path) -> list[str]:
    import torch

    from models import build_model
    from runs import load_checkpoint, save_checkpoint

    args = S_test_set(env, w)
    path = w / "runs" / "r" / "k2" / "fold1.pt"
    ck = load_checkpoint(path)
    torch.manual_seed(0)
    save_checkpoint(path, {**ck, "model": "mlp", "state_dict": build_model("mlp").state_dict(),
                           "config": {**ck["config"], "model": "mlp"}})
    return args


err_case("mlp checkpoint in a lenet run (test.py)", "error naming the checkpoint", TEST, _mlp_checkpoint,
         "fold1.pt", "'mlp'", "'lenet'")
err_case("mlp checkpoint in a lenet run (resume)", "error naming the checkpoint", TRAIN,
         lambda env, w: _mlp_checkpoint(env, w) and T(env, w), "fold1.pt", "other settings")


@case("random bytes as a checkpoint", "error naming the checkpoint")
def _random_bytes(env: Env, w: Path, o: Outcome):
    args = S_test_set(env, w)
    (w / "runs" / "r" / "k2" / "fold0.pt").write_bytes(random.Random(0).randbytes(4096))
    o.watch(w)
    line = expect_error(o, env.run(TEST, *args), "fold0.pt", "not a readable checkpoint")
    o.check("file an issue" not in line, f"the error asks the user to file a PyTorch issue for a damaged file: {line!r}")


def _truncated_checkpoint(env: Env, w: Path) -> list[str]:
    args = S_test_set(env, w)
    ck = w / "runs" / "r" / "k2" / "fold1.pt"
    ck.write_bytes(ck.read_bytes()[:5000])
    return args


err_case("truncated checkpoint (test.py)", "error naming the checkpoint", TEST, _truncated_checkpoint,
         "fold1.pt", "not a readable checkpoint")


def _refusal_is_clear(o: Outcome, line: str) -> None:
    """The refusal names what the file wanted to call, and does not suggest weights_only=False."""
    o.check("posix.system" in line or "os.system" in line,
            f"the message does not name the refused global (posix.system): {line!r}")
    o.check("set to `False`" not in line, f"the one-line message suggests re-running with weights_only=False: {line!r}")


@case("pickle that runs code, in a torch checkpoint (test.py)", "error; the code never runs")
def _evil_torch(env: Env, w: Path, o: Outcome):
    import torch

    marker, control = w / "PWNED", w / "control_marker"
    args = S_test_set(env, w)
    path = w / "runs" / "r" / "k2" / "fold0.pt"
    torch.save({"format": 1, "model": "lenet", "state_dict": {}, "x": Payload(marker)}, path)
    # The payload is live: an unsafe load (weights_only=False) runs it.
    torch.save({"x": Payload(control)}, w / "probe.pt")
    torch.load(w / "probe.pt", weights_only=False)
    o.check(control.exists(), "harness: the payload does not run even when loaded unsafely")
    o.watch(w / "runs")
    p = env.run(TEST, *args)
    line = expect_error(o, p, "fold0.pt", "not a readable checkpoint")
    _refusal_is_clear(o, line)
    o.check(not marker.exists(), "THE PICKLED CODE RAN: marker file created")
    o.seen += " [no marker]" if not marker.exists() else " [MARKER CREATED]"


@case("pickle that runs code, as a fold checkpoint (resume)", "warning, fold retrained, code never runs")
def _evil_pickle_resume(env: Env, w: Path, o: Outcome):
    import pickle

    marker, control = w / "PWNED", w / "control_marker"
    run = env.run_copy(w)
    payload = pickle.dumps(Payload(marker), protocol=2)
    (run / "k2" / "fold0.pt").write_bytes(payload)
    pickle.loads(pickle.dumps(Payload(control), protocol=2))
    o.check(control.exists(), "harness: the payload does not run even when unpickled")
    keep = mtimes(run, "k2/fold1.*")
    p = env.run(TRAIN, *T(env, w))
    expect_ok(o, p, warning="fold0.pt")
    _refusal_is_clear(o, next((ln for ln in p.err.splitlines() if "fold0.pt" in ln), ""))
    o.check(not marker.exists(), "THE PICKLED CODE RAN: marker file created")
    o.check(mtimes(run, "k2/fold1.*") == keep, "fold 1 was retrained although it was finished")
    o.check(fold_jsons(run) == fold_jsons(env.ref_run()), "the retrained fold differs from the reference run")
    o.lost += damaged(scan(run))
    o.seen += " [no marker; fold 0 retrained = reference]"


@case("truncated fold checkpoint (resume)", "warning, only that fold retrained")
def _truncated_resume(env: Env, w: Path, o: Outcome):
    run = env.run_copy(w)
    ck = run / "k2" / "fold1.pt"
    ck.write_bytes(ck.read_bytes()[:3000])
    keep = mtimes(run, "k2/fold0.*")
    p = env.run(TRAIN, *T(env, w))
    expect_ok(o, p, warning="fold1.pt")
    o.check("resuming: 1 fold(s) already done, 1 to train" in p.out, f"unexpected resume plan: {p.out[-400:]}")
    o.check(mtimes(run, "k2/fold0.*") == keep, "fold 0 was retrained although it was finished")
    o.check(fold_jsons(run) == fold_jsons(env.ref_run()), "fold JSONs differ from the reference run")
    o.lost += damaged(scan(run))


@case("corrupt config.json (resume)", "error naming config.json")
def _corrupt_config(env: Env, w: Path, o: Outcome):
    run = env.run_copy(w)
    cfg = run / "config.json"
    cfg.write_text(cfg.read_text()[:40])
    o.watch(run)
    expect_error(o, env.run(TRAIN, *T(env, w)), "config.json", "not valid JSON")


# -- index variants that must just work (test.py --only --index)
@case("Windows line endings (CRLF)", "exit 0, every line read")
def _crlf(env: Env, w: Path, o: Outcome):
    idx = digits_index(env, w / "crlf.txt", 20, newline="\r\n")
    args = S(env, w, "--only", "--index", str(idx))
    o.watch(w)
    p = env.run(TEST, *args)
    expect_ok(o, p)
    n = score_n(w / "runs" / "r", "crlf")
    o.check(n == 20, f"scored {n} digits, expected 20")
    o.seen += f", {n}/20 digits scored"


@case("duplicate lines, same label", "warning, duplicates skipped, exit 0")
def _dups(env: Env, w: Path, o: Outcome):
    lines = [f"{p},{label}" for p, label in env.images("test", 20)]
    idx = write_index(w / "dups.txt", lines + lines[3:5])
    args = S(env, w, "--only", "--index", str(idx))
    o.watch(w)
    p = env.run(TEST, *args)
    expect_ok(o, p, warning="duplicate")
    n = score_n(w / "runs" / "r", "dups")
    o.check(n == 20, f"scored {n} digits, expected 20 (2 duplicates skipped)")


# -- dataset.py
def _truncated_idx(env: Env, w: Path) -> list[str]:
    raw = w / "raw"
    shutil.copytree(env.raw, raw)
    f = next(raw.glob("train-images-idx3-ubyte*"))
    f.write_bytes(f.read_bytes()[:-200])
    return ["prepare", "--mnist-dir", str(raw), "--data-dir", str(w / "data")]


err_case("prepare from a truncated IDX file", "error naming the IDX file", DATASET, _truncated_idx,
         "train-images-idx3-ubyte")
err_case("prepare with --mnist-dir lacking the files", "error naming the folder", DATASET,
         lambda env, w: ["prepare", "--mnist-dir", str((w / "nothing").mkdir() or w / "nothing"),
                         "--data-dir", str(w / "data")], "nothing", "--mnist-dir")


def _unusable_import(env: Env, w: Path) -> list[str]:
    write_gray_png(w / "src" / "3" / "dot.png", 1, 1, 255)
    write_gray_png(w / "src" / "4" / "blank.png", 40, 40, 0)
    (w / "src" / "5").mkdir()
    (w / "src" / "5" / "notes.png").write_text("not an image")
    return ["import-handwritten", str(w / "src"), "--out", str(w / "out" / "mine")]


err_case("import-handwritten: no usable image", "error naming the folder", DATASET, _unusable_import,
         "no usable digit images")
