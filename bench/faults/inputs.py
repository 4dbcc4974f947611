"""The environment of the cases (tiny data, a reference run, a folder per case) and crafted inputs."""
from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import signal
import struct
import sys
import zlib
from pathlib import Path

from .harness import REPO, TIMEOUT, TRAIN, Child, ForkServer, Proc, start_fresh

# The uninterrupted reference run; the kill/resume cases train with exactly these settings.
REF_ARGS = ("--limit", "300", "--epochs", "4", "--folds", "2", "--seed", "0")
COMMON = ("--device", "cpu", "--jobs", "1")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Env:
    """Tiny data, a reference run, a folder per case, and the way to start the repo's scripts."""

    def __init__(self, raw: Path, data: Path, root: Path, fresh: bool | None = None):
        self.raw, self.data, self.root = Path(raw), Path(data), Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fresh = bool(os.environ.get("FAULTS_FRESH")) if fresh is None else fresh
        # One thread per process: on a shared 2-core machine torch's default threading is ~10x slower.
        self.base_env = {**os.environ, "MNIST_DIR": str(self.raw), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.base_env.pop("FAULTS_FRESH", None)
        self._server: ForkServer | None = None
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
            return start_fresh(script, args, out, err, cwd, env, inject)
        if self._server is None:
            self._server = ForkServer(self.base_env, logs / "server.log")
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


class Payload:
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


def digits_index(env: Env, path: Path, n: int, newline: str = "\n") -> Path:
    """An index of the first n prepared test digits."""
    return write_index(path, [f"{p},{label}" for p, label in env.images("test", n)], newline=newline)


def bad_index(env: Env, work: Path, bad_line: str, name: str = "bad.txt") -> Path:
    """# header (line 1), a good digit (line 2), the bad line (line 3), a good digit (line 4)."""
    (a, la), (b, lb) = env.images("train", 2)
    return write_index(work / name, [f"{a},{la}", bad_line, f"{b},{lb}"])
