"""Every example in the README and the CLI/campaign docs runs as written.

Convention of the pages: a fenced block with the info string ``sh`` or ``python`` is an
example and must run; ``toml``/``json`` blocks must parse (and a TOML block that shows a
shipped file must equal it); blocks fenced as ``text`` (or without a language) are
syntax sketches and output samples, not run.

Each page runs in its own sandbox folder that looks like the repository root (``src``,
``examples``, ``vnncomp_scripts`` linked in) with ``../shared`` linked to the benchmark
data when it exists; a command that needs ``../shared`` is left out only when the data is
absent. Every command must exit 0, unless a trailing comment ``# exit 0, 1 or 4`` lists
the codes it may end with (``contract check`` answers with its verdict). Blocks run in
page order in the same folder, so a later block may read what an earlier one wrote; the
files a page's examples write are then checked (:data:`OUTPUT_CHECKS`: e.g. the pages of
``docs/contracts.md`` rendered in headless Chromium). ``NNRES_DOCS_OUT=DIR`` keeps each
page's folder under DIR. ``docs/cli.md``'s exit-code table must list exactly the codes
the CLI defines, and it must have a section for every command.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/cli.md", "docs/campaigns.md", "docs/contracts.md"]
# README blocks run by other means: the install + test command is .ci/run itself, the
# install + demo command is covered by tests/cli/test_demo.py (nnres demo --quick), the
# Python quick start by tests/test_readme.py (which also checks its printed numbers).
SKIP_MARKERS = ("<!-- demo-command -->", "<!-- test-command -->")
SHIPPED = {"name = \"ctg\"": REPO / "examples" / "campaigns" / "ctg.toml"}


def blocks(page: str) -> list[tuple[str, str, str]]:
    """``(language, code, marker line before it)`` of every fenced block of ``page``."""
    out, lines = [], (REPO / page).read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*```([a-z]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        prev = lines[i - 1].strip() if i else ""
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        code = "".join(line[indent:] + "\n" for line in lines[i + 1:j])
        out.append((m.group(1), code, prev))
        i = j + 1
    return out


def allowed_exit_codes(cmd: str) -> set[int]:
    """The exit codes a command line may end with: those of a trailing ``# exit ...``
    comment, else 0."""
    m = re.search(r"#\s*exit\b(.*)$", cmd)
    return {int(c) for c in re.findall(r"\d+", m.group(1))} if m else {0}


def commands(code: str) -> list[str]:
    """The command lines of an ``sh`` block (continuations joined, comments dropped)."""
    lines, cur = [], ""
    for raw in code.splitlines():
        line = raw.rstrip()
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        lines.append(cur + line)
        cur = ""
    return lines


def _sandbox(tmp_path: Path, page: str) -> Path:
    keep = os.environ.get("NNRES_DOCS_OUT")
    root = Path(keep) / Path(page).stem if keep else tmp_path / "repo"
    if keep and root.exists():
        import shutil

        shutil.rmtree(root)
    root.mkdir(parents=True)
    for name in ("src", "examples", "vnncomp_scripts"):
        (root / name).symlink_to(REPO / name)
    bench = os.environ.get("NNRES_BENCHMARKS")
    shared = Path(bench).parent if bench else REPO.parent / "shared"
    if (shared / "benchmarks").is_dir() and not (root.parent / "shared").exists():
        (root.parent / "shared").symlink_to(shared)
    return root


def _run_sh(code: str, cwd: Path, ran: list[str]) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}")
    has_shared = (cwd.parent / "shared").exists()
    for cmd in commands(code):
        if "../shared" in cmd and not has_shared:
            continue
        assert cmd.startswith("nnres "), f"an example that is not an nnres command: {cmd}"
        res = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=300)
        with (cwd / "log.txt").open("a") as log:         # kept with NNRES_DOCS_OUT
            log.write(f"$ {cmd}\n{res.stdout}{res.stderr}exit {res.returncode}\n")
        assert res.returncode in allowed_exit_codes(cmd), \
            f"{cmd}\nexit {res.returncode}\n{res.stderr[-2000:]}"
        assert "Traceback" not in res.stderr, f"{cmd}\n{res.stderr[-2000:]}"
        ran.append(cmd)


def _run_python(code: str, cwd: Path) -> None:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, "docs example", "exec"), {"__name__": "docs_example"})
    finally:
        os.chdir(old)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_examples_of_the_page_run(page, tmp_path):
    cwd = _sandbox(tmp_path, page)
    ran: list[str] = []
    for lang, code, prev in blocks(page):
        if prev in SKIP_MARKERS:
            continue
        if lang == "sh":
            _run_sh(code, cwd, ran)
        elif lang == "python":
            if page == "README.md":
                continue                         # tests/test_readme.py runs and checks it
            _run_python(code, cwd)
            ran.append("python block")
        elif lang == "toml":
            data = tomllib.loads(code)
            assert isinstance(data, dict)
            for marker, path in SHIPPED.items():
                if marker in code:
                    assert code == path.read_text(), f"{path} differs from {page}"
        elif lang == "json":
            json.loads(code)
    if page != "docs/cli.md":
        assert ran, f"no example of {page} ran"
    if page in OUTPUT_CHECKS:
        OUTPUT_CHECKS[page](cwd, tmp_path)


def _contracts_outputs(cwd: Path, tmp_path: Path) -> None:
    """What the examples of docs/contracts.md wrote: the documents (with their command
    field), the witness arrays, and the four pages rendered in headless Chromium (every
    plot decoded, no wider than a 1400 px window)."""
    import numpy as np

    for name, command in (("ctg_contract.json", "contract"), ("ctg_scaled.json", "contract"),
                          ("digits_contract.json", "contract"),
                          ("ctg_check.json", "contract check"),
                          ("ctg_compare.json", "compare")):
        doc = json.loads((cwd / name).read_text())
        assert doc["command"] == command, name
    assert json.loads((cwd / "ctg_check.json").read_text())["model_changed"] is True
    assert (cwd / "ctg_contract_api.json").is_file()
    for name in ("ctg_witnesses.npz", "ctg_compare_witnesses.npz"):
        with np.load(cwd / name, allow_pickle=False) as z:
            assert z["a"].shape == z["a_perturbed"].shape and z["a"].shape[1:] in ((18,),
                                                                                   (0,))
    from nnresilience.testing.browser import chromium, render

    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI")
        pytest.skip("chromium not installed (the examples ran)")
    for page in ("ctg_contract.html", "ctg_check.html", "ctg_compare.html",
                 "digits_compare.html"):
        r = render(cwd / page, tmp_path / f"chrome-{page}")
        assert r.images_expected >= 1, page
        assert r.images_loaded == r.images_expected, page
        assert r.scroll_width is not None and r.scroll_width <= 1400, page
        assert r.screenshot[..., :3].std() > 0.05, page


OUTPUT_CHECKS = {"docs/contracts.md": _contracts_outputs}


def _name(c) -> str:
    return c.name or c.callback.__name__.replace("_", "-")


def test_readme_examples_are_commands_of_this_cli():
    """Cheap check (no run): every README/docs command names an existing subcommand."""
    from nnresilience.cli import _load_commands
    from nnresilience.cli.app import app

    _load_commands()
    names = {_name(c) for c in app.registered_commands} | {g.name for g in
                                                          app.registered_groups}
    for page in PAGES:
        for lang, code, _ in blocks(page):
            if lang != "sh":
                continue
            for cmd in commands(code):
                if cmd.startswith("nnres "):
                    assert cmd.split()[1] in names, f"{page}: {cmd}"


def test_cli_doc_lists_the_true_exit_codes_and_every_command():
    from nnresilience.cli import EXIT_CODES, _load_commands
    from nnresilience.cli.app import app

    text = (REPO / "docs" / "cli.md").read_text()
    table = text.split("### Exit codes", 1)[1].split("###", 1)[0]
    codes = {int(c) for c in re.findall(r"(?m)^\| (\d+) \|", table)}
    assert codes == set(EXIT_CODES)
    assert text.count("### Exit codes") == 1
    _load_commands()
    for c in app.registered_commands:
        assert f"### `nnres {_name(c)}`" in text, f"docs/cli.md lacks nnres {_name(c)}"
    for g in app.registered_groups:
        for c in g.typer_instance.registered_commands:
            assert f"### `nnres {g.name} {_name(c)}`" in text
    # exit codes are listed once: other pages link to docs/cli.md instead
    for page in ("README.md", "docs/campaigns.md"):
        assert "| 130 |" not in (REPO / page).read_text()
