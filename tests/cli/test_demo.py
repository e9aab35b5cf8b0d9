"""``nnres demo``: runs on shipped data only and produces tables, JSON and a report."""

from __future__ import annotations

import importlib.util
import json

import numpy as np

from nnresilience.cli import main
from nnresilience.cli.demo import (
    QUICK_DELTAS,
    QUICK_SAMPLES,
    Cell,
    cell_text,
    disagreements,
    markdown_tables,
    rule_counts,
)
from nnresilience.data import ctg_network, ctg_samples

# Verdicts of the quick grid, computed independently (scipy MILP on the shipped weights).
QUICK_EXPECTED = {("A1", 0.01): "holds", ("A1", 0.035): "violated",
                  ("B3", 0.01): "holds", ("B3", 0.035): "violated",
                  ("C1", 0.01): "holds", ("C1", 0.035): "holds"}


def test_shipped_network_reproduces_labels():
    net, s = ctg_network(), ctg_samples()
    assert np.array_equal(net.predict(s.x), s.labels)


def _cell(sample, delta, engine, status):
    return Cell(sample=sample, label=0, delta=delta, engine=engine, status=status,
                seconds=0.1)


def test_tables_and_disagreement_flag():
    s = ctg_samples()
    cells = [_cell("A1", 0.01, "milp", "holds"), _cell("A1", 0.01, "reluplex", "holds"),
             _cell("A1", 0.02, "milp", "violated"), _cell("A1", 0.02, "reluplex", "holds"),
             _cell("A2", 0.01, "milp", "unknown"), _cell("A2", 0.01, "reluplex", "holds")]
    md = markdown_tables(cells, s, (0.01, 0.02))
    assert "| normal sample A1 | ✓ | milp:Fail / reluplex:✓ **DISAGREE** |" in md
    assert "Table I:" in md and "Table II" not in md
    # unknown vs holds is not a disagreement; holds vs violated is
    assert disagreements(cells) == [("A1", 0.02, {"milp": "violated", "reluplex": "holds"})]
    assert cell_text([_cell("A1", 0.01, "milp", "violated")]) == "Fail"
    assert rule_counts({"rules": {"pivot": 3, "l_update_b2": 1}, "splits": 2,
                        "flag": True}) == {"pivot": 3, "l_update_b2": 1, "splits": 2}


def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--quick", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert (out / "results.json").is_file() and (out / "tables.md").is_file()
    res = json.loads((out / "results.json").read_text())
    got = {(c["sample"], c["delta"]): c["status"] for c in res["cells"]}
    assert set(got) == {(s, d) for s in QUICK_SAMPLES for d in QUICK_DELTAS}
    assert got == QUICK_EXPECTED
    for c in res["cells"]:
        if c["status"] == "violated":
            assert c["flipped_to"] is not None and c["flipped_to"] != c["label"]
            assert np.max(np.abs(np.asarray(c["x"]) - _center(c["sample"]))) <= c["delta"] + 1e-9
    tables = (out / "tables.md").read_text()
    assert "normal sample A1 | ✓ | Fail |" in tables
    assert "pathologic sample C1 | ✓ | ✓ |" in tables
    # the printed rich table carries the verdicts, and the report path is announced
    assert "✓" in text and "Fail" in text
    if importlib.util.find_spec("nnresilience.store") is not None:
        assert (out / "campaign.sqlite").is_file()
        from nnresilience.store import CampaignStore

        with CampaignStore(out / "campaign.sqlite", readonly=True) as store:
            assert store.count("robustness") == len(QUICK_EXPECTED)
    if importlib.util.find_spec("nnresilience.report") is not None:
        assert (out / "report.html").is_file()
        assert str(out / "report.html") in text.replace("\n", "")


def _center(sid: str) -> np.ndarray:
    s = ctg_samples()
    return s.x[s.ids.index(sid)]
