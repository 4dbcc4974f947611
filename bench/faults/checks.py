"""What a case checks: the files a run leaves (sound or damaged), a process's exit and stderr, the table."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from pathlib import Path

from .harness import Proc

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


# ---------------------------------------------------------------- the table

def format_table(rows: list[tuple]) -> str:
    """rows: (Case, Outcome) pairs -> case | expected | seen | ok, the totals, then each failure's problems."""
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
