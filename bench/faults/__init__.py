"""The fault suite behind bench/fault_table.py and tests/test_faults.py.

harness: running the scripts in child processes (fork server), fault injection;
checks: file integrity, exit/stderr expectations, the table; inputs: Env and crafted inputs;
registry: Case, CASES, run_case; cases_bad_input, cases_faults: the cases, in table order.
"""
from . import cases_bad_input, cases_faults  # noqa: F401  (importing them fills CASES, in this order)
from .checks import Outcome, format_table
from .inputs import Env, build_tiny_data
from .registry import CASES, Case, run_case

__all__ = ["CASES", "Case", "Env", "Outcome", "build_tiny_data", "format_table", "run_case"]
