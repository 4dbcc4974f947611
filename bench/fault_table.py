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
    python bench/fault_table.py --fresh    # a new interpreter per process (slower)

By default each script runs in a process forked from a server that has imported torch once
(see bench/faults/harness.py); --fresh (or FAULTS_FRESH=1) starts `python SCRIPT ...` instead.
One case ("same seed, fresh interpreter") always does, as a cross-check of the two.

The cases and their machinery live in bench/faults/; tests/test_faults.py runs each case as
a pytest test.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

from faults import CASES, Env, build_tiny_data, format_table, run_case
from faults.harness import REPO


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
    sys.exit(main())
