"""The one list of cases, the decorators that fill it, and running one case."""
from __future__ import annotations

import dataclasses
import json
import time
import traceback
from pathlib import Path
from typing import Callable

from .checks import Outcome, expect_error, lost_between, scan
from .inputs import Env, slug


@dataclasses.dataclass
class Case:
    name: str
    expected: str
    fn: Callable[[Env, Path, Outcome], None]

    @property
    def id(self) -> str:
        return slug(self.name)


CASES: list[Case] = []  # in table order: cases_bad_input, then cases_faults


def case(name: str, expected: str):
    def register(fn):
        CASES.append(Case(name, expected, fn))
        return fn
    return register


def err_case(name: str, expected: str, script: str, make_args: Callable[[Env, Path], list], *needles,
             option: str | None = None):
    """A bad-input case: make_args builds the inputs in `work` and returns the script's arguments."""
    def fn(env: Env, work: Path, o: Outcome):
        args = make_args(env, work)
        o.watch(work)
        p = env.run(script, *args)
        expect_error(o, p, *needles, option=option)
    case(name, expected)(fn)


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


# ---------------------------------------------------------------- argument helpers shared by the cases

def T(env: Env, work: Path, *extra, train: Path | None = None) -> list[str]:
    """train_kfold.py with the reference settings, its run in `work`."""
    return env.train_args(work, *extra, train=train)


def S(env: Env, work: Path, *extra) -> list[str]:
    """test.py on a copy of the reference run."""
    run = work / "runs" / "r"
    if not run.exists():
        env.run_copy(work)
    return ["--run", str(run), "--runs-dir", str(work / "runs"), "--device", "cpu", *extra]


def S_test_set(env: Env, work: Path) -> list[str]:
    """test.py --only on the prepared test set, with a copy of the reference run."""
    return S(env, work, "--only", "--index", str(env.data / "test.txt"))


def score_n(run: Path, name: str) -> int | None:
    """How many digits test.py scored for the index `name` (None when there are no results)."""
    try:
        return json.loads((run / "test_results.json").read_text())["sets"][name]["n"]
    except Exception:
        return None
