"""Campaign settings files (TOML/JSON), re-runs kept apart (latest answer per question),
exports (VNN-COMP results.csv, csv, json + counterexample files) and the store upgrade.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from nnresilience.campaign import load_campaign, run_campaign
from nnresilience.cli import main
from nnresilience.errors import InvalidArgumentError
from nnresilience.parallel import InlineExecutor
from nnresilience.store import CampaignStore


@pytest.fixture
def instances(tmp_path) -> Path:
    """Two VNN-COMP instances on a tiny net: one violated, one that holds."""
    from nnresilience.loaders.export import save_onnx
    from nnresilience.network import Affine, Network, ReLU

    net = Network([Affine(np.array([[1.0, 1.0], [1.0, -1.0]]), np.zeros(2)), ReLU(2),
                   Affine(np.array([[1.0, -1.0], [0.0, 0.0]]), np.array([0.0, 0.5]))])
    bench = tmp_path / "tinybench"
    bench.mkdir()
    save_onnx(net, bench / "tiny.onnx")
    for name, bound in (("reach", 1.5), ("far", 2.5)):
        lines = ["(declare-const X_0 Real)", "(declare-const X_1 Real)",
                 "(declare-const Y_0 Real)", "(declare-const Y_1 Real)",
                 "(assert (>= X_0 -1.0))", "(assert (<= X_0 1.0))",
                 "(assert (>= X_1 -1.0))", "(assert (<= X_1 1.0))",
                 f"(assert (>= Y_0 {bound}))"]
        (bench / f"{name}.vnnlib").write_text("\n".join(lines) + "\n")
    csv_path = bench / "instances.csv"
    csv_path.write_text("tiny.onnx,reach.vnnlib,20\ntiny.onnx,far.vnnlib,20\n")
    return csv_path


def test_toml_config_settings_reach_every_unit(instances, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('name = "tiny"\n\n[settings]\nengine = "milp"\ntimeout = 15\n'
                   'bounds = "interval"\nsolver = "highs"\nfalsify_budget = 0.5\n\n'
                   '[settings.resilience]\npreset = "dataflow"\nlookback = 1\n\n'
                   f'[[units]]\nkind = "verify"\ninstances = "{instances}"\n')
    camp = load_campaign(cfg)
    assert camp.name == "tiny" and len(camp.units) == 2
    for u in camp.units:
        # the csv's own timeout (20) wins over the settings' default (15)
        assert u.params["engine"] == "milp" and u.params["timeout"] == 20.0
        assert u.params["settings"] == {"bounds": "interval", "solver": "highs",
                                        "falsify_budget": 0.5,
                                        "resilience": {"preset": "dataflow", "lookback": 1}}
    from nnresilience.campaign import resilience_settings

    rs = resilience_settings(camp.units[0].params["settings"])
    assert rs.big_m == "interval" and rs.lookback == 1 and rs.backend == "highs"


def test_config_option_overrides_and_rerun_is_a_new_answer(instances, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    cfg = tmp_path / "fast.toml"
    cfg.write_text('[settings]\ntimeout = 30\nbounds = "interval"\n')
    base = ["campaign", "run", str(instances), "--store", str(store), "--quiet"]
    assert main(base) == 0
    assert main(base) == 0                                 # same settings: all skipped
    assert main(base + ["--config", str(cfg)]) == 0        # other settings: new answers
    capsys.readouterr()
    with CampaignStore(store, readonly=True) as st:
        assert st.count() == 4
        latest = st.all(latest=True)
        assert len(latest) == 2
        assert all(r.params["settings"] == {"bounds": "interval"} for r in latest)
        assert len({r.query_id for r in st.all()}) == 2    # two questions, four answers
    assert main(["campaign", "show", str(store), "--json", "-"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["total"] == 4 and shown["shown"] == 2
    assert shown["summary"] == {"verify": {"holds": 1, "violated": 1}}
    assert main(["campaign", "show", str(store), "--all", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"] == {
        "verify": {"holds": 2, "violated": 2}}
    # the report keeps them apart too
    out = tmp_path / "r.html"
    assert main(["report", str(store), "-o", str(out)]) == 0
    text = out.read_text()
    assert "2 answers from" in text and "2 earlier answer(s)" in text
    assert len(re.findall(r"<tr><td class='num'>\d+</td>", text)) == 2
    assert main(["report", str(store), "-o", str(out), "--all"]) == 0
    assert len(re.findall(r"<tr><td class='num'>\d+</td>", out.read_text())) == 4


def test_rows_show_full_names_without_wrapping(instances, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    long_dir = tmp_path / ("a_really_long_benchmark_folder_name_" * 3)
    long_dir.mkdir()
    for f in instances.parent.iterdir():
        target = long_dir / ("ACASXU_run2a_1_1_batch_2000_" + f.name if f.suffix == ".onnx"
                             else f.name)
        target.write_bytes(f.read_bytes())
    (long_dir / "instances.csv").write_text(
        "ACASXU_run2a_1_1_batch_2000_tiny.onnx,reach.vnnlib,20\n")
    assert main(["campaign", "run", str(long_dir / "instances.csv"), "--store", str(store),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["campaign", "show", str(store), "--rows"]) == 0
    out = capsys.readouterr().out
    assert "ACASXU_run2a_1_1_batch_2000_tiny/reach" in out       # not cut to 'ACASXU_…'
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) > 80       # no hard wrap at 80


def test_exports(instances, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    assert main(["campaign", "run", str(instances), "--store", str(store), "--quiet"]) == 0
    out = tmp_path / "exp" / "results.csv"
    assert main(["campaign", "export", str(store), "-o", str(out)]) == 0
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert len(rows) == 2 and all(len(r) == 5 for r in rows)
    words = {Path(r[2]).name: r[3] for r in rows}
    assert words == {"reach.vnnlib": "sat", "far.vnnlib": "unsat"}
    assert {r[0] for r in rows} == {"tinybench"}                   # the category
    assert all(float(r[4]) >= 0 for r in rows)
    # one counterexample file per violated instance, in the VNN-COMP result format
    cex = list((tmp_path / "exp" / "results_counterexamples").iterdir())
    assert [p.name for p in cex] == ["tiny_reach.counterexample"]
    text = cex[0].read_text()
    assert text.startswith("sat\n((X_0 ")
    xs = [float(v) for v in re.findall(r"\(X_\d+ ([^\s()]+)\)", text)]
    from nnresilience.loaders import load_network

    y = load_network(instances.parent / "tiny.onnx").forward(np.array(xs))
    assert y[0] >= 1.5                                            # it really violates
    # csv with a header, strict json
    assert main(["campaign", "export", str(store), "--format", "csv", "-o",
                 str(tmp_path / "a.csv"), "--counterexamples", str(tmp_path / "cx")]) == 0
    table = list(csv.DictReader(io.StringIO((tmp_path / "a.csv").read_text())))
    assert {r["status"] for r in table} == {"holds", "violated"}
    assert {r["vnncomp"] for r in table} == {"sat", "unsat"}
    capsys.readouterr()
    assert main(["campaign", "export", str(store), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out, parse_constant=_no_constants)
    assert len(data) == 2 and {d["status"] for d in data} == {"holds", "violated"}


def _no_constants(name: str):
    raise AssertionError(f"non-standard JSON constant {name}")


def test_version_1_store_is_read_and_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE queries (id INTEGER PRIMARY KEY AUTOINCREMENT,
            network_hash TEXT NOT NULL, property_hash TEXT NOT NULL,
            params_hash TEXT NOT NULL, kind TEXT NOT NULL, network_name TEXT,
            network_path TEXT, property_name TEXT, params TEXT NOT NULL, status TEXT,
            lower REAL, upper REAL, result TEXT NOT NULL, seconds REAL, engine TEXT,
            created_at TEXT NOT NULL, UNIQUE (network_hash, property_hash, params_hash));
        INSERT INTO meta VALUES ('schema_version', '1'), ('application', 'nnresilience'),
            ('created_at', 'x');
        INSERT INTO queries (network_hash, property_hash, params_hash, kind, params,
            status, result, created_at) VALUES ('n', 'p', 'q', 'verify', '{}', 'holds',
            '{"status": "holds"}', 'x');
    """)
    con.commit()
    con.close()
    with CampaignStore(path, readonly=True) as st:                 # read as it is
        (r,) = st.all()
        assert r.status == "holds" and r.property_path is None and r.info == {}
    with CampaignStore(path) as st:                                # upgraded in place
        assert st.meta()["schema_version"] == "2"
        assert st.all()[0].status == "holds"


def test_settings_are_validated_before_anything_runs(instances, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[settings]\ntimeout = -1\n")
    with pytest.raises(InvalidArgumentError, match="timeout"):
        from nnresilience.campaign import load_settings

        load_settings(bad)
    camp = load_campaign(instances, overrides={"timeout": 5})
    with CampaignStore(tmp_path / "s.sqlite") as st:
        s = run_campaign(camp.units, st, InlineExecutor())
        assert s.done == 2 and {r.params["timeout"] for r in st.all()} == {5.0}
