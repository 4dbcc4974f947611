"""Running the repo's scripts in child processes, and the faults injected inside them.

Importing torch costs seconds on a busy machine, so by default each script runs in a process
forked from a small server (this file run as `harness.py --serve`) that has imported torch,
numpy, PIL and sklearn once. The child runs the real script file as __main__ (runpy) with its
own argv, cwd, environment, stdout/stderr files and exit status, so signals and exit codes are
those of a real process. Fresh mode starts `python SCRIPT ...` instead (with an injected fault:
`python harness.py --exec INJECT SCRIPT ...`).

Nothing of the repo, and nothing else of this package, is imported here at module level: the
server and --exec run this file, and must not hold the repo's modules (each child loads them
afresh, as a new process would). Keep this file standard library only.
"""
from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent.parent
TRAIN, TEST, DATASET = (str(REPO / s) for s in ("train_kfold.py", "test.py", "dataset.py"))
TIMEOUT = 240  # seconds for one process


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


class ForkServer:
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

    def __init__(self, pid, out: Path, err: Path, server: ForkServer | None = None, popen=None):
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


def start_fresh(script: str, args: list[str], out: Path, err: Path, cwd: str, env: dict,
                inject: dict | None = None) -> Child:
    """`python script args` in a new interpreter (through --exec when a fault is injected)."""
    cmd = [sys.executable, script, *args] if not inject else \
        [sys.executable, __file__, "--exec", json.dumps(inject), script, *args]
    with open(out, "wb") as fo, open(err, "wb") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, cwd=cwd, env=env)
    return Child(p.pid, out, err, popen=p)


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


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve()
    elif sys.argv[1:2] == ["--exec"]:
        sys.exit(_exec_script(sys.argv[3], sys.argv[4:], json.loads(sys.argv[2])))
    else:
        sys.exit(f"usage: {sys.argv[0]} --serve | --exec INJECT_JSON SCRIPT [ARGS...]")
