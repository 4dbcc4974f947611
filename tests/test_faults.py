"""End-to-end fault handling: the real scripts, run as processes, against bad input, kills and full disks.

The cases (and the machinery that runs them) live in the package bench/faults/;
`python bench/fault_table.py` prints them as a table; here each case is one test. Every case runs the
repo's scripts in separate processes with --runs-dir and data under tmp, and checks exit status, the
one-line `error:`/`warning:` on stderr, and that no file of the run/data folder is damaged.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "bench") not in sys.path:
    sys.path.insert(0, str(REPO / "bench"))

import faults  # noqa: E402  (needs bench/ on sys.path)

RESULTS: dict[str, tuple] = {}  # case name -> (Case, Outcome), for the table at the end


@pytest.fixture(scope="module")
def env(tiny_mnist_raw, tiny_data, tmp_path_factory):
    e = faults.Env(tiny_mnist_raw, tiny_data, tmp_path_factory.mktemp("faults"))
    yield e
    e.close()


@pytest.mark.parametrize("case", faults.CASES, ids=[c.id for c in faults.CASES])
def test_fault_case(env, case):
    outcome = faults.run_case(case, env)
    RESULTS[case.name] = (case, outcome)
    if outcome.lost:
        pytest.fail(f"{case.name}: files lost:\n" + "\n".join(outcome.lost), pytrace=False)
    if outcome.problems:
        pytest.fail(f"{case.name} (seen: {outcome.seen}):\n" + "\n".join(outcome.problems), pytrace=False)
    assert outcome.handled


def test_table_covers_the_issue_and_totals_are_clean(capsys):
    """The case table is big enough and unambiguous; the totals of the cases run above are clean."""
    names = [c.name for c in faults.CASES]
    assert len(names) >= 20 and len(set(names)) == len(names)
    assert len({c.id for c in faults.CASES}) == len(names)
    rows = list(RESULTS.values())
    table = faults.format_table(rows)
    with capsys.disabled():
        print("\n" + table)
    assert f"cases tried: {len(rows)}" in table
    assert sum(len(o.lost) for _, o in rows) == 0, "files lost"
    assert [c.name for c, o in rows if not o.handled] == []
