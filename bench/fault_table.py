"""Fault table: run the repo's real scripts against bad input, kills and full disks.

Every case runs train_kfold.py, test.py or dataset.py as a separate process (with
--runs-dir and data in a temporary folder), then checks what came out:

  * errors:   exit status > 0, ONE line `error: ...` on stderr naming the file (and line),
              never a traceback (argparse's own `prog: error: ... --option` is accepted, exit 2);
  * warnings: exit status 0, a `warning: ...` line;
  * faults:   SIGKILL mid-fold / mid-checkpoint-write / at random moments, Ctrl-C, a killed
              `dataset.py prepare`, a damaged dataset cache, a full disk, a read-only folder;
              after each one every file of the run/data folder must still be readable, the
              rerun must finish, and its fold JSONs must equal those of an uninterrupted run.

"files lost" counts the files of a run/data folder that were truncated, unreadable or
half-written (a leftover .tmp) after a case.

    python bench/fault_table.py            # all cases, prints  case | expected | seen | ok
    python bench/fault_table.py -k cache   # only cases whose name contains 'cache'
    python bench/fault_table.py --fresh    # a new interpreter per process (slower, see below)

Speed: importing torch costs seconds on a busy machine, so by default each script runs in
a process forked from a small server that has imported torch, numpy, PIL and sklearn (and
nothing of this repo). The child runs the real script file as __main__ (runpy) with its own
argv, cwd, environment, stdout/stderr files and exit status, so signals and exit codes are
those of a real process. --fresh (or FAULTS_FRESH=1) starts `python SCRIPT ...` instead.
One case ("same seed, fresh interpreter") always does, as a cross-check of the two.

tests/test_faults.py imports CASES from here and runs each as a pytest test.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import hashlib
import io
import json
import os
import queue
import random
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from pathlib import Path
from typing import Callable

# Nothing of the repo is imported at module level: the fork server imports this file too, and
# must not hold the repo's modules (each child loads them afresh, as a new process would).

REPO = Path(__file__).resolve().parent.parent
TRAIN, TEST, DATASET = (str(REPO / s) for s in ("train_kfold.py", "test.py", "dataset.py"))
# The uninterrupted reference run; the kill/resume cases train with exactly these settings.
REF_ARGS = ("--limit", "300", "--epochs", "4", "--folds", "2", "--seed", "0")
COMMON = ("--device", "cpu", "--jobs", "1")
TIMEOUT = 240  # seconds for one process


# ---------------------------------------------------------------- running a script in a child process

@dataclasses.dataclass
class Proc:
    rc: int | None  # exit status; negative: killed by that signal
    out: str
    err: str
    maxrss_kb: int
    seconds: float
    timed_out: bool = False


def _exec_script(script: str, args: list[str], inject: dict | None) -> int:
    """Run `script` as __main__ in this process, the way `python script args` would; returns the exit code."""
    import runpy

    sys.argv = [script, *args]
    sys.path[0] = str(Path(script).resolve().parent)
    if inject:
        apply_injection(inject)
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:  # as Python does: traceback, then die of SIGINT
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        traceback.print_exc()
        code = 1
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
    return code


def _serve() -> None:
    """Fork server: import the heavy libraries once, then fork one child per request (one at a time)."""
    import numpy  # noqa: F401
    import PIL.Image  # noqa: F401
    import PIL.PngImagePlugin  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import torch  # noqa: F401  (no threads are started by the import: fork-safe)
    import tqdm  # noqa: F401

    proto_fd = os.dup(1)
    proto = os.fdopen(proto_fd, "w", buffering=1)

    def send(msg):
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    send({"ready": True})
    for line in sys.stdin.buffer:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(proto_fd)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
                for fd, path in ((1, req["out"]), (2, req["err"])):
                    f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(f, fd)
                    os.close(f)
                os.chdir(req["cwd"])
                os.environ.clear()
                os.environ.update(req["env"])
                signal.signal(signal.SIGINT, signal.default_int_handler)
                code = _exec_script(req["script"], req["args"], req.get("inject"))
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        send({"pid": pid})
        _, status, ru = os.wait4(pid, 0)
        send({"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": ru.ru_maxrss})


class _ForkServer:
    def __init__(self, env: dict, log: Path):
        self.log = open(log, "ab")
        self.p = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.log, cwd=str(REPO), env=env)
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        msg = self.q.get(timeout=600)
        if not (msg and msg.get("ready")):
            raise RuntimeError(f"fork server did not start (see {log})")

    def _read(self):
        for line in self.p.stdout:
            self.q.put(json.loads(line))
        self.q.put(None)

    def start(self, req: dict) -> int:
        self.p.stdin.write((json.dumps(req) + "\n").encode())
        self.p.stdin.flush()
        msg = self.q.get(timeout=60)
        if msg is None or "pid" not in msg:
            raise RuntimeError("fork server died")
        return msg["pid"]

    def result(self, timeout: float | None):
        try:
            msg = self.q.get(timeout=timeout) if timeout is None or timeout > 0 else self.q.get_nowait()
        except queue.Empty:
            return None
        if msg is None:
            raise RuntimeError("fork server died")
        return msg

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()
            self.p.wait()
        self.log.close()


class Child:
    """A running script: send it signals, read its stdout so far, wait for it."""

    def __init__(self, pid, out: Path, err: Path, server: _ForkServer | None = None, popen=None):
        self.pid, self.out_path, self.err_path = pid, out, err
        self.server, self.popen = server, popen
        self.t0 = time.monotonic()
        self._result = None

    def poll(self):
        if self._result is None:
            if self.server is not None:
                self._result = self.server.result(0)
            else:
                pid, status, ru = os.wait4(self.pid, os.WNOHANG)
                if pid:
                    self._result = {"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": ru.ru_maxrss}
                    self.popen.returncode = self._result["rc"]
        return self._result

    def running(self) -> bool:
        return self.poll() is None

    def send(self, sig=signal.SIGKILL) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def out_text(self) -> str:
        try:
            return self.out_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self, timeout: float = TIMEOUT) -> Proc:
        """Wait for the exit (and reap it: a killed writer's pid must be gone before a resume)."""
        deadline = time.monotonic() + timeout
        timed_out = False
        while self.poll() is None:
            if time.monotonic() > deadline:
                timed_out = True
                self.send(signal.SIGKILL)
                deadline = time.monotonic() + 60
            if self.server is not None:
                self._result = self.server.result(min(0.5, max(0.01, deadline - time.monotonic())))
            else:
                time.sleep(0.01)
        r = self._result
        return Proc(r["rc"], self.out_text(), self.err_path.read_text(errors="replace"), r["maxrss_kb"],
                    round(time.monotonic() - self.t0, 2), timed_out)


def wait_for(predicate: Callable[[], bool], child: Child, timeout: float = TIMEOUT, step: float = 0.005) -> bool:
    """Poll `predicate` until it holds (True), or the child ends or time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if not child.running():
            return predicate()
        time.sleep(step)
    return False


# ---------------------------------------------------------------- fault injection (runs inside the child)

class _FullDiskFile:
    """A file on a full disk: the first write stores half its bytes, then fails with ENOSPC."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._f.name)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def apply_injection(inject: dict) -> None:
    """Patch this process: 'slow_fsync' (every fsync first sleeps), or for paths under inject['dir']:
    'enospc' (writes fail half-way with ENOSPC) or 'readonly' (creating/changing files fails with EROFS)."""
    import builtins

    kind = inject["kind"]
    if kind == "slow_fsync":
        real_fsync, pause = os.fsync, float(inject["seconds"])

        def slow_fsync(fd):
            time.sleep(pause)
            return real_fsync(fd)

        os.fsync = slow_fsync
        return
    root = os.path.abspath(inject["dir"])

    def inside(p) -> bool:
        if isinstance(p, int):
            return False
        p = os.path.abspath(os.fsdecode(os.fspath(p)))
        return p == root or p.startswith(root + os.sep)

    def refuse(p):
        code = errno.EROFS if kind == "readonly" else errno.ENOSPC
        raise OSError(code, os.strerror(code), os.fsdecode(os.fspath(p)))

    real_open = io.open

    def fake_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and inside(file):
            if kind == "readonly":
                refuse(file)
            return _FullDiskFile(real_open(file, mode, *args, **kwargs))
        return real_open(file, mode, *args, **kwargs)

    builtins.open = io.open = fake_open
    if kind != "readonly":
        return
    for name, nargs in (("mkdir", 1), ("rmdir", 1), ("unlink", 1), ("remove", 1),
                        ("replace", 2), ("rename", 2), ("symlink", 2)):
        real = getattr(os, name)

        def guarded(*args, _real=real, _n=nargs, **kwargs):
            for p in args[:_n]:
                if inside(p):
                    refuse(p)
            return _real(*args, **kwargs)

        setattr(os, name, guarded)
    real_os_open = os.open

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    os.open = guarded_os_open


# ---------------------------------------------------------------- integrity of the files a case leaves

def file_problem(path: Path) -> str | None:
    """Why this file is damaged (truncated, unreadable, half-written), or None when it is sound."""
    name = path.name
    if name.endswith(".tmp"):
        return "temporary file left behind (half-written)"
    try:
        suffix = path.suffix.lower()
        if suffix == ".pt":
            from runs import load_checkpoint

            load_checkpoint(path)
        elif suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as z:
                for k in z.files:
                    z[k]
        elif suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                if im.size[0] * im.size[1] <= 50_000_000:  # never decode the deliberately huge input
                    im.load()
        elif suffix == ".txt":
            import contextlib

            from dataset import read_index

            with contextlib.redirect_stderr(io.StringIO()):  # its duplicate-line warnings are not ours
                samples = read_index(path)
            missing = [s.path for s in samples if not os.path.isfile(s.path)]
            if missing:
                return f"index lists {len(missing)} missing image(s), e.g. {missing[0]}"
        elif suffix == ".csv":
            text = path.read_text(encoding="utf-8")
            if not text.endswith("\n") or len(text.splitlines()) < 2:
                return "incomplete CSV"
    except Exception as e:
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else ''}"
    return None


def scan(root: Path) -> dict[str, str | None]:
    """{relative path: problem or None} for every regular file under root (hidden ones too)."""
    root = Path(root)
    found = {}
    if not root.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        for fn in filenames:
            p = Path(dirpath) / fn
            if p.is_symlink() or not p.is_file():
                continue
            found[p.relative_to(root).as_posix()] = file_problem(p)
    return found


def damaged(state: dict[str, str | None], allow_tmp: bool = False) -> list[str]:
    return [f"{rel}: {why}" for rel, why in state.items()
            if why and not (allow_tmp and rel.endswith(".tmp"))]


def lost_between(before: dict, after: dict) -> list[str]:
    """Files that were sound (or did not exist) before and are damaged after, or sound and now gone."""
    lost = [f"{rel}: {why}" for rel, why in after.items() if why and before.get(rel) is None]
    lost += [f"{rel}: deleted" for rel, why in before.items() if why is None and rel not in after]
    return lost


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file() and not p.is_symlink()}


def fold_jsons(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(Path(run_dir).glob("k*/fold*.json"))}


def mtimes(run_dir: Path, pattern: str = "k*/fold*") -> dict[str, int]:
    return {p.relative_to(run_dir).as_posix(): p.stat().st_mtime_ns for p in sorted(Path(run_dir).glob(pattern))
            if not p.name.startswith(".")}


# ---------------------------------------------------------------- the environment of the cases

class Env:
    """Tiny data, a reference run, a folder per case, and the way to start the repo's scripts."""

    def __init__(self, raw: Path, data: Path, root: Path, fresh: bool | None = None):
        self.raw, self.data, self.root = Path(raw), Path(data), Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fresh = bool(os.environ.get("FAULTS_FRESH")) if fresh is None else fresh
        # One thread per process: on a shared 2-core machine torch's default threading is ~10x slower.
        self.base_env = {**os.environ, "MNIST_DIR": str(self.raw), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.base_env.pop("FAULTS_FRESH", None)
        self._server: _ForkServer | None = None
        self._current: Child | None = None
        self._ref: Path | None = None
        self.ref_seconds = 0.0  # how long the reference training process ran
        self._huge: Path | None = None
        self._n = 0
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))

    # -- processes
    def start(self, script: str, *args, cwd: Path | None = None, env: dict | None = None,
              inject: dict | None = None, fresh: bool | None = None) -> Child:
        self._n += 1
        logs = self.root / "_logs"
        logs.mkdir(exist_ok=True)
        out, err = logs / f"{self._n:03d}.out", logs / f"{self._n:03d}.err"
        env = {**self.base_env, **(env or {})}
        args = [str(a) for a in args]
        cwd = str(cwd or REPO)
        if self.fresh if fresh is None else fresh:
            cmd = [sys.executable, script, *args] if not inject else \
                [sys.executable, __file__, "--exec", json.dumps(inject), script, *args]
            with open(out, "wb") as fo, open(err, "wb") as fe:
                p = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, cwd=cwd, env=env)
            return Child(p.pid, out, err, popen=p)
        if self._server is None:
            self._server = _ForkServer(self.base_env, self.root / "_logs" / "server.log")
        if self._current is not None and self._current.running():  # one child at a time per server
            self._current.send(signal.SIGKILL)
            self._current.wait()
        pid = self._server.start({"script": script, "args": args, "cwd": cwd, "env": env,
                                  "out": str(out), "err": str(err), "inject": inject})
        self._current = Child(pid, out, err, server=self._server)
        return self._current

    def run(self, script: str, *args, timeout: float = TIMEOUT, **kw) -> Proc:
        return self.start(script, *args, **kw).wait(timeout)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    # -- folders and data
    def workdir(self, name: str) -> Path:
        d = self.root / slug(name)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return d

    def train_args(self, work: Path, *extra, train: Path | None = None, run: str = "r") -> list[str]:
        return ["--train", str(train or self.data / "train.txt"), *REF_ARGS, *COMMON,
                "--runs-dir", str(work / "runs"), "--run", run, *extra]

    def ref_run(self) -> Path:
        """The uninterrupted run with REF_ARGS (trained once, shared, never modified)."""
        if self._ref is None:
            work = self.root / "_reference"
            shutil.rmtree(work, ignore_errors=True)
            p = self.run(TRAIN, *self.train_args(work, run="ref"))
            if p.rc != 0:
                raise RuntimeError(f"reference run failed (exit {p.rc}): {p.err[-1500:]}")
            self.ref_seconds = p.seconds
            self._ref = work / "runs" / "ref"
        return self._ref

    def run_copy(self, work: Path, name: str = "r") -> Path:
        dst = work / "runs" / name
        shutil.copytree(self.ref_run(), dst)
        return dst

    def images(self, split: str = "test", n: int = 20, start: int = 0) -> list[tuple[Path, int]]:
        """(absolute path, label) of prepared digits."""
        rows = [ln for ln in (self.data / f"{split}.txt").read_text().splitlines() if ln and not ln.startswith("#")]
        out = []
        for ln in rows[start : start + n]:
            rel, label = ln.rsplit(",", 1)
            out.append((self.data / rel, int(label)))
        return out

    def huge_png(self) -> Path:
        if self._huge is None:
            self._huge = write_constant_png(self.root / "_inputs" / "huge_10000x10000.png", 10_000, 10_000)
        return self._huge


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ---------------------------------------------------------------- crafted inputs

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, idat: bytes) -> bytes:
    """A grayscale 8-bit PNG with this header and compressed pixel stream, chunk CRCs correct."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def write_constant_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black PNG of any size, streamed: ~100 KB on disk for 10,000 x 10,000."""
    comp = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(width, height, idat))
    return path


def write_gray_png(path: Path, width: int, height: int, value: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (width, height), value).save(path)
    return path


def zero_size_png(path: Path) -> str:
    """Write a 0x0 PNG by hand (PIL refuses to write one); returns PIL's refusal."""
    from PIL import Image

    try:
        Image.new("L", (0, 0)).save(io.BytesIO(), format="PNG")
        refusal = "PIL wrote it"
    except Exception as e:
        refusal = f"PIL: {e}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(0, 0, zlib.compress(b"")))
    return refusal


class _Payload:
    """Unpickling this runs a shell command (here: creates a marker file)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def write_index(path: Path, lines: list[str], newline: str = "\n", header: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = (["# fault-table index"] if header else []) + lines
    path.write_bytes("".join(ln + newline for ln in body).encode("utf-8"))
    return path


def bad_index(env: Env, work: Path, bad_line: str, name: str = "bad.txt") -> Path:
    """# header (line 1), a good digit (line 2), the bad line (line 3), a good digit (line 4)."""
    (a, la), (b, lb) = env.images("train", 2)
    return write_index(work / name, [f"{a},{la}", bad_line, f"{b},{lb}"])


# ---------------------------------------------------------------- checking what a process did

_PATH_DIRS = re.compile(r"(?<![\w.])/(?:[^/\s'\",:()]+/)+")


def short(text: str, width: int = 96) -> str:
    text = _PATH_DIRS.sub("", text.strip())
    return text if len(text) <= width else text[: width - 1] + "…"


def last_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "error:" in ln or ln.startswith(("Traceback", "interrupted")):
            return ln
    return lines[-1] if lines else ""


@dataclasses.dataclass
class Outcome:
    seen: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)
    lost: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    watched: list = dataclasses.field(default_factory=list)

    @property
    def handled(self) -> bool:
        return not self.problems and not self.lost

    def check(self, cond, message: str) -> bool:
        if not cond:
            self.problems.append(message)
        return bool(cond)

    def watch(self, folder: Path) -> None:
        """From now on, files of `folder` must not get damaged (checked when the case ends)."""
        self.watched.append((Path(folder), scan(folder)))


def expect_error(o: Outcome, p: Proc, *needles: str, option: str | None = None) -> str:
    """Exit > 0, no traceback, one `error: ...` line holding every needle (or argparse's usage error)."""
    lines = [ln for ln in p.err.splitlines() if ln.strip()]
    o.seen = f"exit {p.rc}: {short(last_line(p.err))}"
    o.check(p.rc is not None and p.rc > 0 and not p.timed_out, f"exit status {p.rc}: expected an error exit (> 0)")
    o.check("Traceback" not in p.err, "traceback on stderr:\n" + p.err[-1500:])
    if option:  # argparse type errors: usage + 'prog: error: argument --opt: ...', exit 2
        last = lines[-1] if lines else ""
        o.check(p.rc == 2, f"argparse errors exit 2, got {p.rc}")
        o.check(re.match(r"^\S+: error: ", last) and option in last,
                f"expected '<prog>: error: ... {option} ...' as the last stderr line, got {last!r}")
        return last
    errors = [ln for ln in lines if not ln.startswith("warning: ")]
    o.check(len(errors) == 1 and errors[0].startswith("error: "),
            f"expected exactly one 'error: ...' line on stderr (besides warnings), got {errors[:6]!r}")
    line = next((ln for ln in errors if ln.startswith("error: ")), "")
    for n in needles:
        o.check(n in line, f"the error line lacks {n!r}: {line!r}")
    return line


def expect_ok(o: Outcome, p: Proc, warning: str | None = None) -> None:
    """Exit 0, no traceback, no error line; with `warning`, a 'warning: ...' line containing it."""
    o.check(p.rc == 0 and not p.timed_out, f"exit status {p.rc}, expected 0; stderr: {p.err[-1500:]}")
    o.check("Traceback" not in p.err, "traceback on stderr:\n" + p.err[-1500:])
    o.check(not any("error:" in ln for ln in p.err.splitlines()), f"an error line on stderr: {p.err[-500:]}")
    warnings = [ln for ln in p.err.splitlines() if ln.startswith("warning: ")]
    if warning is not None:
        o.check(any(warning in w for w in warnings), f"no 'warning: ...{warning}...' line; stderr: {p.err[-800:]}")
    o.seen = f"exit {p.rc}" + (f": {short(next((w for w in warnings if warning in w), ''), 80)}" if warning else "")


# ---------------------------------------------------------------- the cases

@dataclasses.dataclass
class Case:
    name: str
    expected: str
    fn: Callable[[Env, Path, Outcome], None]

    @property
    def id(self) -> str:
        return slug(self.name)


CASES: list[Case] = []


def case(name: str, expected: str):
    def register(fn):
        CASES.append(Case(name, expected, fn))
        return fn
    return register


def run_case(c: Case, env: Env) -> Outcome:
    o = Outcome()
    t0 = time.monotonic()
    work = env.workdir(c.name)
    try:
        c.fn(env, work, o)
    except Exception as e:
        o.problems.append(f"harness: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        if not o.seen:
            o.seen = f"harness failure: {type(e).__name__}"
    for folder, before in o.watched:
        o.lost += [f"{folder.name}/{x}" for x in lost_between(before, scan(folder))]
    o.seconds = round(time.monotonic() - t0, 2)
    return o


def err_case(name: str, expected: str, script: str, make_args: Callable[[Env, Path], list], *needles,
             option: str | None = None, needles_fn: Callable[[Env, Path], list] | None = None):
    """A bad-input case: make_args builds the inputs in `work` and returns the script's arguments."""
    def fn(env: Env, work: Path, o: Outcome):
        args = make_args(env, work)
        o.watch(work)
        p = env.run(script, *args)
        expect_error(o, p, *needles, *(needles_fn(env, work) if needles_fn else ()), option=option)
    case(name, expected)(fn)


def T(env: Env, work: Path, *extra, train: Path | None = None) -> list[str]:
    return env.train_args(work, *extra, train=train)


def S(env: Env, work: Path, *extra) -> list[str]:
    """test.py on a copy of the reference run."""
    run = work / "runs" / "r"
    if not run.exists():
        env.run_copy(work)
    return ["--run", str(run), "--runs-dir", str(work / "runs"), "--device", "cpu", *extra]


E1 = "error naming file:line"

# -- malformed index lines (train_kfold.py --train INDEX)
err_case("index line without a label", E1, TRAIN,
         lambda env, w: T(env, w, train=bad_index(env, w, str(env.images("train", 1, 5)[0][0]))),
         "bad.txt:3", "path,label")
err_case("label 10", E1, TRAIN,
         lambda env, w: T(env, w, train=bad_index(env, w, f"{env.images('train', 1, 5)[0][0]},10")),
         "bad.txt:3", "'10'")
err_case("label -1", E1, TRAIN,
         lambda env, w: T(env, w, train=bad_index(env, w, f"{env.images('train', 1, 5)[0][0]},-1")),
         "bad.txt:3", "'-1'")
err_case("label 'seven'", E1, TRAIN,
         lambda env, w: T(env, w, train=bad_index(env, w, f"{env.images('train', 1, 5)[0][0]} seven")),
         "bad.txt:3", "'seven'")
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

    args = S(env, w, "--only", "--index", str(env.data / "test.txt"))
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


def _random_checkpoint(env: Env, w: Path) -> list[str]:
    args = S(env, w, "--only", "--index", str(env.data / "test.txt"))
    (w / "runs" / "r" / "k2" / "fold0.pt").write_bytes(random.Random(0).randbytes(4096))
    return args


@case("random bytes as a checkpoint", "error naming the checkpoint")
def _random_bytes(env: Env, w: Path, o: Outcome):
    args = _random_checkpoint(env, w)
    o.watch(w)
    line = expect_error(o, env.run(TEST, *args), "fold0.pt", "not a readable checkpoint")
    o.check("file an issue" not in line, f"the error asks the user to file a PyTorch issue for a damaged file: {line!r}")


def _truncated_checkpoint(env: Env, w: Path) -> list[str]:
    args = S(env, w, "--only", "--index", str(env.data / "test.txt"))
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
    args = S(env, w, "--only", "--index", str(env.data / "test.txt"))
    path = w / "runs" / "r" / "k2" / "fold0.pt"
    torch.save({"format": 1, "model": "lenet", "state_dict": {}, "x": _Payload(marker)}, path)
    # The payload is live: an unsafe load (weights_only=False) runs it.
    torch.save({"x": _Payload(control)}, w / "probe.pt")
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
    payload = pickle.dumps(_Payload(marker), protocol=2)
    (run / "k2" / "fold0.pt").write_bytes(payload)
    pickle.loads(pickle.dumps(_Payload(control), protocol=2))
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
def _score_n(run: Path, name: str) -> int | None:
    try:
        return json.loads((run / "test_results.json").read_text())["sets"][name]["n"]
    except Exception:
        return None


@case("Windows line endings (CRLF)", "exit 0, every line read")
def _crlf(env: Env, w: Path, o: Outcome):
    idx = write_index(w / "crlf.txt", [f"{p},{label}" for p, label in env.images("test", 20)], newline="\r\n")
    args = S(env, w, "--only", "--index", str(idx))
    o.watch(w)
    p = env.run(TEST, *args)
    expect_ok(o, p)
    n = _score_n(w / "runs" / "r", "crlf")
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
    n = _score_n(w / "runs" / "r", "dups")
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


# ---------------------------------------------------------------- faults: kills, Ctrl-C, full disk, read-only

def _finish_and_compare(env: Env, w: Path, o: Outcome, run: Path, keep: dict) -> Proc:
    """Rerun with the same --run: it must finish, leave finished folds alone, equal the reference."""
    p = env.run(TRAIN, *T(env, w))
    expect_ok(o, p)
    o.check(not any(run.rglob("*.tmp")), f"temporary files left after the resume: {list(run.rglob('*.tmp'))}")
    now = mtimes(run)
    o.check(all(now.get(f) == t for f, t in keep.items()),
            f"finished fold files were rewritten: {[f for f, t in keep.items() if now.get(f) != t]}")
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    o.check(summary.get("per_k", {}).get("2", {}).get("folds_done") == [0, 1], f"fold set after resume: {summary}")
    o.check(fold_jsons(run) == fold_jsons(env.ref_run()), "fold JSONs differ from the uninterrupted run")
    o.lost += damaged(scan(run))
    return p


def _kill_check(o: Outcome, run: Path, when: str) -> None:
    o.lost += [f"after {when}: {x}" for x in damaged(scan(run), allow_tmp=True)]


@case("SIGKILL in the middle of a fold, then resume", "resumes; fold 0 kept; JSON = uninterrupted")
def _kill_mid_fold(env: Env, w: Path, o: Outcome):
    run = w / "runs" / "r"
    env.ref_run()
    c = env.start(TRAIN, *T(env, w))
    o.check(wait_for(lambda: "k2 fold 1/1 epoch 1/" in c.out_text(), c), "training ended before the kill point")
    c.send(signal.SIGKILL)
    p = c.wait()
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
        now = mtimes(run)
        o.check(all(now.get(f) == t for f, t in keep.items()), f"a finished file was rewritten before {target}")
        keep = now
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
        now = mtimes(run)
        o.check(all(now.get(f) == t for f, t in keep.items()), f"kill {i + 1}: a finished fold file was rewritten")
        keep = now
    r = _finish_and_compare(env, w, o, run, keep)
    o.seen = f"kills at {', '.join(moments)}; resume exit {r.rc}, JSON = uninterrupted"


@case("Ctrl-C (SIGINT) during training", "exit 130, one line naming --run r, no traceback")
def _ctrl_c(env: Env, w: Path, o: Outcome):
    run = w / "runs" / "r"
    env.ref_run()
    c = env.start(TRAIN, *T(env, w))
    o.check(wait_for(lambda: "epoch 1/" in c.out_text(), c), "training ended before Ctrl-C")
    c.send(signal.SIGINT)
    p = c.wait()
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

        idx = write_index(w / "set" / "digits.txt", [f"{p},{label}" for p, label in env.images("test", 100)])
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
    args = S(env, w, "--only", "--index", str(env.data / "test.txt"))
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
    idx = write_index(w / "set" / "digits.txt", [f"{p},{label}" for p, label in env.images("test", 20)])
    args = S(env, w, "--only", "--index", str(idx))
    o.watch(w / "set")
    p = env.run(TEST, *args, inject={"kind": "readonly", "dir": str(w / "set")})
    expect_ok(o, p, warning="cannot write dataset cache")
    o.check(not (w / "set" / ".cache").exists(), "a cache folder was created in the read-only folder")
    o.check(_score_n(w / "runs" / "r", "digits") == 20, "the digits were not scored")


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


# ---------------------------------------------------------------- the table

def format_table(rows: list[tuple[Case, Outcome]]) -> str:
    widths = (46, 44, 100)
    head = ("case", "expected", "seen")
    fit = lambda s, n: s if len(s) <= n else s[: n - 1] + "…"  # noqa: E731
    out = [" | ".join(h.ljust(n) for h, n in zip(head, widths)) + " | ok",
           "-+-".join("-" * n for n in widths) + "-+---"]
    for c, o in rows:
        cells = (c.name, c.expected, o.seen.replace("\n", " "))
        out.append(" | ".join(fit(s, n).ljust(n) for s, n in zip(cells, widths)) + " | " + ("ok" if o.handled else "FAIL"))
    lost = sum(len(o.lost) for _, o in rows)
    handled = sum(o.handled for _, o in rows)
    out.append("")
    out.append(f"cases tried: {len(rows)}   cases handled: {handled}   files lost: {lost}")
    for c, o in rows:
        if not o.handled:
            out.append(f"\nFAIL {c.name}:")
            out += [f"    {line}" for p in o.problems + [f"file lost: {x}" for x in o.lost]
                    for line in p.splitlines()[:12]]
    return "\n".join(out)


def build_tiny_data(folder: Path) -> tuple[Path, Path]:
    """tests/conftest.py's tiny MNIST (600 train / 200 test, real digits when found, else synthetic)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_fault_table_conftest", REPO / "tests" / "conftest.py")
    cf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cf)
    import mnist

    raw = folder / "raw"
    raw.mkdir(parents=True)
    real = None if os.environ.get("TESTS_SYNTHETIC_MNIST") else cf.find_real_mnist()
    for split, count in cf.TINY_COUNTS.items():
        images, labels = cf._tiny_split_from_real(real, split, count) if real else cf._tiny_split_synthetic(split, count)
        images_name, labels_name, _ = mnist.SPLITS[split]
        cf._write_idx(raw / f"{images_name}.gz", images)
        cf._write_idx(raw / f"{labels_name}.gz", labels)
    data = folder / "data"
    mnist.prepare_mnist(data, mnist_dir=str(raw))
    return raw, data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", metavar="TEXT", help="only cases whose name contains TEXT")
    ap.add_argument("--fresh", action="store_true", help="a new interpreter per process instead of the fork server")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--list", action="store_true", help="list the cases and stop")
    args = ap.parse_args(argv)
    cases = [c for c in CASES if not args.k or args.k.lower() in c.name.lower()]
    if args.list:
        for c in cases:
            print(f"{c.name:50s} {c.expected}")
        return 0
    sys.path.insert(0, str(REPO))
    tmp = Path(tempfile.mkdtemp(prefix="fault_table_"))
    start = time.monotonic()
    env = None
    try:
        import contextlib

        with contextlib.redirect_stdout(sys.stderr):
            raw, data = build_tiny_data(tmp / "tiny")
        env = Env(raw, data, tmp / "cases", fresh=args.fresh or None)
        rows = []
        for i, c in enumerate(cases, 1):
            o = run_case(c, env)
            rows.append((c, o))
            print(f"[{i}/{len(cases)}] {'ok  ' if o.handled else 'FAIL'} {c.name} ({o.seconds:.1f}s)", file=sys.stderr)
        print(format_table(rows))
        print(f"\n{'fresh interpreters' if env.fresh else 'fork server'}; wall time {time.monotonic() - start:.0f}s")
        return 0 if all(o.handled for _, o in rows) else 1
    finally:
        if env is not None:
            env.close()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        _serve()
    elif len(sys.argv) > 1 and sys.argv[1] == "--exec":
        sys.exit(_exec_script(sys.argv[3], sys.argv[4:], json.loads(sys.argv[2])))
    else:
        sys.exit(main())
