"""Every example of ``docs/contracts.md`` runs as written, and its pages render.

The ``bash`` blocks are run command by command (``\\`` continuations joined) and the
``python`` blocks as scripts, in document order, in a folder whose ``src`` and
``examples`` are the repository's. A trailing ``# exit 0 or 4`` comment lists the exit
codes a command may end with (default 0). The pages the examples write are then loaded in
headless Chromium: every plot decoded, the page no wider than a 1400 px window.
``NNRES_DOCS_OUT=DIR`` keeps the outputs there (the figures quoted in the page come from
such a run).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "contracts.md"

pytestmark = pytest.mark.slow


def _blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"```(bash|python)\n(.*?)```", text, flags=re.S)]


def _commands(block: str) -> list[tuple[str, set[int]]]:
    """Logical command lines with their allowed exit codes."""
    out, cur = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip() and not cur.strip().startswith("#"):
            cmd, _, comment = cur.partition("#")
            codes = {int(c) for c in re.findall(r"\d+", comment)} if "exit" in comment \
                else {0}
            out.append((cmd.strip(), codes))
        cur = ""
    return out


def test_doc_blocks_are_parsed():
    blocks = _blocks(DOC.read_text())
    cmds = [c for kind, b in blocks if kind == "bash" for c, _ in _commands(b)]
    assert sum(c.startswith("nnres contract ") for c in cmds) >= 5
    assert sum(c.startswith("nnres compare ") for c in cmds) == 2
    assert any("digits" in c for c in cmds if c.startswith("nnres contract "))
    assert any("ctg_leaky" in c for c in cmds if c.startswith("nnres compare "))
    assert _commands("a \\\n  b  # exit 0, 1 or 4\n") == [("a    b", {0, 1, 4})]


def test_contracts_doc_examples_run(tmp_path):
    out = Path(os.environ.get("NNRES_DOCS_OUT") or tmp_path / "run")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("src", "examples"):
        if not (out / name).exists():
            (out / name).symlink_to(REPO / name)
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
           "COLUMNS": "120"}
    for i, (kind, block) in enumerate(_blocks(DOC.read_text())):
        if kind == "python":
            script = out / f"block{i}.py"
            script.write_text(block)
            runs = [([sys.executable, str(script)], {0})]
        else:
            runs = [(shlex.split(c), codes) for c, codes in _commands(block)]
        for argv, codes in runs:
            res = subprocess.run(argv, cwd=out, env=env, capture_output=True, timeout=600)
            (out / "log.txt").open("ab").write(
                b"$ " + " ".join(argv).encode() + b"\n" + res.stdout + res.stderr)
            assert res.returncode in codes, (argv, res.returncode,
                                             res.stderr.decode()[-2000:])
            assert b"Traceback" not in res.stderr
    for f in ("ctg_contract.json", "ctg_scaled.json", "ctg_check.json",
              "digits_contract.json", "ctg_compare.json", "ctg_witnesses.npz",
              "ctg_compare_witnesses.npz", "ctg_contract_api.json"):
        assert (out / f).is_file(), f
    import json

    chk = json.loads((out / "ctg_check.json").read_text())
    assert chk["model_changed"] is True
    from nnresilience.testing.browser import chromium, render

    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI")
        pytest.skip("chromium not installed")
    for page in ("ctg_contract.html", "ctg_check.html", "ctg_compare.html",
                 "digits_compare.html"):
        r = render(out / page, tmp_path / f"chrome-{page}")
        assert r.images_expected >= 1, page
        assert r.images_loaded == r.images_expected, page
        assert r.scroll_width is not None and r.scroll_width <= 1400, page
        assert r.screenshot[..., :3].std() > 0.05, page
