"""The examples of ``docs/contracts.md`` cover what issue 14 asks for and stay cheap.

They are *run* by ``tests/test_docs_examples.py`` (the one docs-examples test: every
``sh`` and ``python`` block of every page, the pages they write loaded in headless
Chromium). This file checks, without running anything, that the page keeps them in the
form that test runs (``sh`` fences: a ``bash`` fence would be skipped silently) and that
they stay what the issue asks for -- ``nnres contract``, ``contract check`` and
``nnres compare`` on the shipped CTG and digits models -- with time limits that keep CI
small.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "contracts.md"
# seconds of --timeout / timeout= all examples of the page may ask for together
CI_BUDGET = 90.0


def _docs_runner():
    spec = importlib.util.spec_from_file_location(
        "docs_examples_runner", REPO / "tests" / "test_docs_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


RUNNER = _docs_runner()


def _examples() -> tuple[list[str], list[str]]:
    sh, py = [], []
    for lang, code, _ in RUNNER.blocks("docs/contracts.md"):
        if lang == "sh":
            sh += RUNNER.commands(code)
        elif lang == "python":
            py.append(code)
    return sh, py


def test_the_page_is_run_by_the_docs_examples_test():
    assert "docs/contracts.md" in RUNNER.PAGES
    assert "docs/contracts.md" in RUNNER.OUTPUT_CHECKS
    fences = re.findall(r"(?m)^\s*```([a-z]*)\s*$", DOC.read_text())
    assert "bash" not in fences and fences.count("sh") >= 3


def test_examples_cover_contract_check_and_compare_on_ctg_and_digits():
    sh, py = _examples()
    contract = [c for c in sh if c.startswith("nnres contract ")
                and not c.startswith("nnres contract check ")]
    check = [c for c in sh if c.startswith("nnres contract check ")]
    compare = [c for c in sh if c.startswith("nnres compare ")]
    assert len(contract) >= 3 and len(check) >= 3 and len(compare) == 2
    for cmds in (contract, check, compare):
        assert any("ctg" in c for c in cmds) and any("digits" in c for c in cmds)
    assert any("--per-input-scale" in c for c in contract)
    assert any("--witnesses" in c for c in contract + compare)
    # a check answers with its verdict: the example says which exit codes it may give
    for c in check:
        assert RUNNER.allowed_exit_codes(c) >= {0, 4}, c
    assert len(py) == 2


def test_time_limits_keep_ci_small():
    sh, py = _examples()
    limits = [float(t) for c in sh for t in re.findall(r"--timeout (\S+)", c)]
    assert len(limits) == len([c for c in sh if c.startswith("nnres ")])   # all bounded
    limits += [float(t) for code in py for t in re.findall(r"timeout=([\d.]+)", code)]
    assert all(t <= 15 for t in limits) and sum(limits) <= CI_BUDGET, limits


def test_exit_code_comments_are_read():
    assert RUNNER.allowed_exit_codes("nnres x  # exit 0, 1 or 4") == {0, 1, 4}
    assert RUNNER.allowed_exit_codes("nnres x --timeout 10") == {0}
