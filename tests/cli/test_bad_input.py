"""The bad-input corpus: every malformed model, property, argument, campaign file, store or
sample file is refused the same way -- exit code 2, exactly one line ``error: ...`` on
stderr that names the problem, no traceback, nothing on stdout, and no file created
(``vnncomp`` alone writes its explicit ``error`` result, the VNN-COMP convention).

The cases run in-process through :func:`nnresilience.cli.main` (seconds for the whole
corpus); three of them also run as real ``nnres`` subprocesses, so the console-script
path is covered too.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnresilience.cli import main

# y = W2 relu(W1 x + b1) + b2: 2 inputs, 3 classes
W1 = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 0.5]])
W2 = np.array([[1.0, 0.5, -1.0], [0.0, 1.0, 1.0], [0.5, -0.5, 0.2]])


def _prop(n_in: int, extra: str = "(assert (>= Y_0 50.0))") -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(3)]
    for i in range(n_in):
        lines += [f"(assert (>= X_{i} -1.0))", f"(assert (<= X_{i} 1.0))"]
    return "\n".join(lines + [extra, ""])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Good and bad input files, in their own folder (outputs go elsewhere)."""
    import onnx
    from onnx import TensorProto, helper

    from nnresilience.loaders.export import save_onnx
    from nnresilience.network import Affine, Network, ReLU

    d = tmp_path_factory.mktemp("inputs")
    f: dict[str, Path] = {}
    net = Network([Affine(W1, np.zeros(3)), ReLU(3), Affine(W2, np.zeros(3))])
    f["model"] = save_onnx(net, d / "tiny.onnx")
    f["trunc"] = d / "trunc.onnx"
    f["trunc"].write_bytes(f["model"].read_bytes()[:40])
    f["empty"] = d / "empty.onnx"
    f["empty"].write_bytes(b"")
    f["text_model"] = d / "model.txt"
    f["text_model"].write_text("not a model\n")
    nodes = [helper.make_node("Cos", ["x"], ["y"], name="the_cos")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    f["cos"] = d / "cos.onnx"
    onnx.save(helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 13)]),
              str(f["cos"]))
    f["prop"] = d / "p.vnnlib"
    f["prop"].write_text(_prop(2))
    f["prop3"] = d / "p3.vnnlib"
    f["prop3"].write_text(_prop(3))
    f["syntax"] = d / "syntax.vnnlib"
    f["syntax"].write_text("(declare-const X_0 Real)\n(assert (>= X_0 \n")
    f["dir"] = d / "a_folder"
    f["dir"].mkdir()
    np.save(d / "x.npy", np.array([[0.5, 0.1], [-0.3, 0.2]]))
    f["x"] = d / "x.npy"
    np.save(d / "x3.npy", np.zeros((2, 3)))
    f["x3"] = d / "x3.npy"
    np.save(d / "xnan.npy", np.array([[0.5, np.nan]]))
    f["xnan"] = d / "xnan.npy"
    np.savez(d / "noxz.npz", a=np.zeros((2, 2)), b=np.zeros(2))
    f["noxz"] = d / "noxz.npz"
    np.save(d / "y_bad.npy", np.array([0, 7]))
    f["y_bad"] = d / "y_bad.npy"
    np.save(d / "y_short.npy", np.array([0]))
    f["y_short"] = d / "y_short.npy"
    f["csv_text"] = d / "x_text.csv"
    f["csv_text"].write_text("a,b\n1,2\n3,oops\n")
    # campaigns
    f["inst_bad_timeout"] = d / "bad_timeout.csv"
    f["inst_bad_timeout"].write_text("tiny.onnx,p.vnnlib,soon\n")
    f["inst_neg_timeout"] = d / "neg_timeout.csv"
    f["inst_neg_timeout"].write_text("tiny.onnx,p.vnnlib,-3\n")
    f["inst_missing"] = d / "missing_model.csv"
    f["inst_missing"].write_text("nowhere.onnx,p.vnnlib,10\n")
    f["inst_short"] = d / "short.csv"
    f["inst_short"].write_text("tiny.onnx\n")
    f["inst"] = d / "instances.csv"
    f["inst"].write_text("tiny.onnx,p.vnnlib,10\n")

    def cfg(name: str, data) -> Path:
        p = d / name
        p.write_text(data if isinstance(data, str) else json.dumps(data))
        return p

    rob = {"kind": "robustness", "network": "tiny.onnx", "inputs": "x.npy",
           "deltas": [0.1], "domain": [-1.0, 1.0]}
    f["json_syntax"] = cfg("syntax.json", "{\"units\": [")
    f["json_key"] = cfg("key.json", {"units": [rob], "unitz": 1})
    f["json_kind"] = cfg("kind.json", {"units": [{**rob, "kind": "robustnes"}]})
    f["json_delta"] = cfg("delta.json", {"units": [{**rob, "deltas": [-0.1]}]})
    f["json_alpha"] = cfg("alpha.json", {"units": [{"kind": "phi", "network": "tiny.onnx",
                                                    "alpha": 0.5, "domain": [-1, 1]}]})
    f["json_labels"] = cfg("labels.json", {"units": [{**rob, "labels": [0, 9]}]})
    f["json_samples"] = cfg("samples.json", {"units": [{**rob, "samples": [0, 5]}]})
    f["json_timeout"] = cfg("timeout.json", {"defaults": {"timeout": "inf"}, "units": [rob]})
    f["toml_syntax"] = cfg("syntax.toml", "[settings\nengine = 'milp'\n")
    f["toml_setting"] = cfg("setting.toml",
                            "[settings]\nengine = 'milp'\nsolverr = 'highs'\n\n[[units]]\n"
                            "kind = 'verify'\nnetwork = 'tiny.onnx'\nproperty = 'p.vnnlib'\n")
    f["cfg_solver"] = cfg("solver.toml", "[settings]\nsolver = 'cplex'\n")
    f["cfg_res"] = cfg("res.toml", "[settings.resilience]\npreset = 'default'\nbigm = 3\n")
    f["cfg_engine"] = cfg("engine.json", {"settings": {"engine": "magic"}})
    f["camp_txt"] = cfg("campaign.txt", "tiny.onnx,p.vnnlib,10\n")
    # stores
    f["not_sqlite"] = cfg("notes.sqlite", "just some text\n")
    f["foreign"] = d / "foreign.sqlite"
    con = sqlite3.connect(f["foreign"])
    con.execute("CREATE TABLE t (a INTEGER)")
    con.commit()
    con.close()
    return f


# (case id, argv given the files and an output folder, words the error line must contain)
def _cases():
    m, p = "{model}", "{prop}"
    o = "{out}"
    return [
        # ------------------------------------------------------------------ models
        ("model-missing", ["verify", "{out}/none.onnx", p], ["none.onnx", "no such file"]),
        ("model-is-dir", ["verify", "{dir}", p], ["a_folder", "directory"]),
        ("model-truncated", ["verify", "{trunc}", p], ["trunc.onnx"]),
        ("model-empty", ["info", "{empty}"], ["empty.onnx"]),
        ("model-suffix", ["bounds", "{text_model}", p], ["model.txt", "unknown model format"]),
        ("model-unsupported-op", ["verify", "{cos}", p], ["'Cos'", "the_cos"]),
        # -------------------------------------------------------------- properties
        ("prop-missing", ["verify", m, "{out}/none.vnnlib"], ["none.vnnlib", "no such"]),
        ("prop-syntax", ["verify", m, "{syntax}"], ["syntax.vnnlib:"]),
        ("prop-sizes", ["verify", m, "{prop3}"], ["p3.vnnlib"]),
        ("prop-is-dir", ["bounds", m, "{dir}"], ["a_folder", "directory"]),
        ("domain-from-missing", ["resilience", m, "--domain-from", "{out}/no.vnnlib"],
         ["no.vnnlib"]),
        # --------------------------------------------------------------- arguments
        ("timeout-inf", ["verify", m, p, "--timeout", "inf"], ["--timeout", "finite"]),
        ("timeout-negative", ["verify", m, p, "--timeout", "-5"], ["--timeout", "positive"]),
        ("timeout-zero", ["verify", m, p, "--timeout", "0"], ["--timeout", "positive"]),
        ("timeout-nan", ["verify", m, p, "--timeout", "nan"], ["--timeout", "finite"]),
        ("timeout-text", ["verify", m, p, "--timeout", "soon"], ["--timeout"]),
        ("engine", ["verify", m, p, "--engine", "nonsense"], ["--engine", "nonsense"]),
        ("bounds-method", ["verify", m, p, "--bounds", "magic"], ["--bounds", "magic"]),
        ("workers-zero", ["verify", m, p, "--workers", "0"], ["--workers", "at least 1"]),
        ("falsify-negative", ["verify", m, p, "--falsify-budget", "-1"],
         ["--falsify-budget"]),
        ("unknown-option", ["verify", m, p, "--nosuch"], ["--nosuch"]),
        ("missing-argument", ["verify", m], ["PROPERTY"]),
        ("json-is-dir", ["verify", m, p, "--json", "{dir}"], ["--json", "directory"]),
        ("json-equals-cex", ["verify", m, p, "--json", o + "/r.json", "--counterexample",
                             o + "/r.json"], ["same file"]),
        ("cex-overwrites-input", ["verify", m, p, "--counterexample", m], ["input file"]),
        ("vnncomp-timeout-negative", ["vnncomp", m, p, o + "/result.txt", "-5"],
         ["TIMEOUT", "positive"]),
        ("vnncomp-timeout-nan", ["vnncomp", m, p, o + "/result.txt", "nan"],
         ["TIMEOUT", "finite"]),
        ("vnncomp-model-missing", ["vnncomp", o + "/none.onnx", p, o + "/result.txt", "5"],
         ["none.onnx"]),
        ("bounds-method-name", ["bounds", m, p, "--method", "magic"], ["--method", "magic"]),
        ("bounds-workers", ["bounds", m, p, "--workers", "-1"], ["--workers"]),
        ("bounds-neuron-limit", ["bounds", m, p, "--neuron-time-limit", "0"],
         ["--neuron-time-limit"]),
        ("alpha-below-1", ["resilience", m, "--alpha", "0.5", "--domain", "-1:1"],
         ["--alpha", ">= 1"]),
        ("alpha-inf", ["resilience", m, "--alpha", "inf", "--domain", "-1:1"], ["--alpha"]),
        ("k-zero", ["resilience", m, "--k", "0", "--domain", "-1:1"], ["--k", "1..2"]),
        ("k-too-big", ["resilience", m, "--k", "9", "--domain", "-1:1"], ["--k", "1..2"]),
        ("class-out-of-range", ["resilience", m, "--class", "7", "--domain", "-1:1"],
         ["--class", "0..2"]),
        ("norm", ["resilience", m, "--norm", "l3", "--domain", "-1:1"], ["--norm", "l3"]),
        ("domain-empty", ["resilience", m, "--domain", "1:0"], ["--domain", "empty"]),
        ("domain-syntax", ["resilience", m, "--domain", "zero-to-one"], ["--domain", "LO:HI"]),
        ("preset", ["resilience", m, "--preset", "fastest", "--domain", "-1:1"],
         ["--preset", "fastest"]),
        ("big-m", ["resilience", m, "--big-m", "huge", "--domain", "-1:1"], ["--big-m"]),
        ("lookback", ["resilience", m, "--lookback", "-1", "--domain", "-1:1"],
         ["--lookback"]),
        ("backend", ["resilience", m, "--backend", "nosolver", "--domain", "-1:1"],
         ["nosolver"]),
        ("resilience-workers", ["resilience", m, "--workers", "-2", "--domain", "-1:1"],
         ["--workers"]),
        ("resilience-timeout", ["resilience", m, "--timeout", "-1", "--domain", "-1:1"],
         ["--timeout"]),
        ("alpha-max-class", ["alpha-max", m, "--class", "-1", "--domain", "-1:1"],
         ["--class"]),
        ("no-domain", ["resilience", m], ["domain"]),
        # --------------------------------------------------------------- sample files
        ("minpert-k-too-big", ["min-perturbation", m, "--data", "{x}", "--k", "9",
                               "--domain", "-1:1"], ["--k", "1..2"]),
        ("minpert-k-zero", ["min-perturbation", m, "--data", "{x}", "--k", "0",
                            "--domain", "-1:1"], ["--k"]),
        ("labels-out-of-range", ["min-perturbation", m, "--data", "{x}", "--labels",
                                 "{y_bad}", "--domain", "-1:1"], ["label 7", "0..2"]),
        ("labels-count", ["min-perturbation", m, "--data", "{x}", "--labels", "{y_short}",
                          "--domain", "-1:1"], ["1 labels for 2 samples"]),
        ("npz-without-x", ["min-perturbation", m, "--data", "{noxz}", "--domain", "-1:1"],
         ["noxz.npz", "array named"]),
        ("data-nan", ["min-perturbation", m, "--data", "{xnan}", "--domain", "-1:1"],
         ["xnan.npy", "non-finite"]),
        ("data-width", ["min-perturbation", m, "--data", "{x3}", "--domain", "-1:1"],
         ["--data", "x3.npy", "3 values"]),
        ("data-missing", ["min-perturbation", m, "--data", o + "/none.npy", "--domain",
                          "-1:1"], ["none.npy"]),
        ("csv-text", ["eval", m, "{csv_text}"], ["x_text.csv:3", "not a number"]),
        ("eval-width", ["eval", m, "{x3}"], ["3 values", "expects 2"]),
        # ---------------------------------------------------------------- campaigns
        ("campaign-workers", ["campaign", "run", "{inst}", "--store", o + "/s.sqlite",
                              "--workers", "-2"], ["--workers"]),
        ("campaign-timeout", ["campaign", "run", "{inst}", "--store", o + "/s.sqlite",
                              "--timeout", "-1"], ["--timeout"]),
        ("campaign-timeout-nan", ["campaign", "run", "{inst}", "--store", o + "/s.sqlite",
                                  "--timeout", "nan"], ["--timeout"]),
        ("campaign-query-timeout", ["campaign", "run", "{inst}", "--store", o + "/s.sqlite",
                                    "--query-timeout", "0"], ["--query-timeout"]),
        ("campaign-engine", ["campaign", "run", "{inst}", "--store", o + "/s.sqlite",
                             "--engine", "bogus"], ["--engine", "bogus"]),
        ("csv-timeout-text", ["campaign", "run", "{inst_bad_timeout}", "--store",
                              o + "/s.sqlite"], ["bad_timeout.csv:1", "soon"]),
        ("csv-timeout-negative", ["campaign", "run", "{inst_neg_timeout}", "--store",
                                  o + "/s.sqlite"], ["neg_timeout.csv:1", "positive"]),
        ("csv-model-missing", ["campaign", "run", "{inst_missing}", "--store",
                               o + "/s.sqlite"], ["missing_model.csv:1", "nowhere.onnx"]),
        ("csv-short-line", ["campaign", "run", "{inst_short}", "--store", o + "/s.sqlite"],
         ["short.csv:1", "onnx,vnnlib"]),
        ("json-syntax", ["campaign", "run", "{json_syntax}", "--store", o + "/s.sqlite"],
         ["syntax.json", "not valid JSON"]),
        ("json-unknown-key", ["campaign", "run", "{json_key}", "--store", o + "/s.sqlite"],
         ["unitz"]),
        ("json-kind", ["campaign", "run", "{json_kind}", "--store", o + "/s.sqlite"],
         ["robustnes"]),
        ("json-delta", ["campaign", "run", "{json_delta}", "--store", o + "/s.sqlite"],
         ["delta", ">= 0"]),
        ("json-alpha", ["campaign", "run", "{json_alpha}", "--store", o + "/s.sqlite"],
         ["alpha", ">= 1"]),
        ("json-labels", ["campaign", "run", "{json_labels}", "--store", o + "/s.sqlite"],
         ["label 9"]),
        ("json-samples", ["campaign", "run", "{json_samples}", "--store", o + "/s.sqlite"],
         ["samples", "0..1"]),
        ("json-timeout", ["campaign", "run", "{json_timeout}", "--store", o + "/s.sqlite"],
         ["timeout", "finite"]),
        ("toml-syntax", ["campaign", "run", "{toml_syntax}", "--store", o + "/s.sqlite"],
         ["syntax.toml", "not valid TOML"]),
        ("toml-setting", ["campaign", "run", "{toml_setting}", "--store", o + "/s.sqlite"],
         ["solverr"]),
        ("config-solver", ["campaign", "run", "{inst}", "--store", o + "/s.sqlite",
                           "--config", "{cfg_solver}"], ["solver", "cplex"]),
        ("config-resilience", ["campaign", "run", "{inst}", "--store", o + "/s.sqlite",
                               "--config", "{cfg_res}"], ["bigm"]),
        ("config-engine", ["campaign", "run", "{inst}", "--store", o + "/s.sqlite",
                           "--config", "{cfg_engine}"], ["engine", "magic"]),
        ("campaign-suffix", ["campaign", "run", "{camp_txt}", "--store", o + "/s.sqlite"],
         ["campaign.txt"]),
        ("store-is-dir", ["campaign", "run", "{inst}", "--store", "{dir}"],
         ["--store", "directory"]),
        ("two-executors", ["campaign", "run", "{inst}", "--store", o + "/s.sqlite",
                           "--workers", "2", "--scheduler", "tcp://x:1"], ["choose one"]),
        # ------------------------------------------------------------------- stores
        ("store-missing", ["campaign", "show", o + "/none.sqlite"], ["none.sqlite"]),
        ("store-not-sqlite", ["campaign", "show", "{not_sqlite}"], ["notes.sqlite"]),
        ("store-foreign", ["campaign", "show", "{foreign}"], ["not an nnresilience"]),
        ("show-kind", ["campaign", "show", "{foreign}", "--kind", "bogus"], ["--kind"]),
        ("report-store-missing", ["report", o + "/none.sqlite", "-o", o + "/r.html"],
         ["none.sqlite"]),
        ("report-output-dir", ["report", "{foreign}", "-o", "{dir}"], ["--output",
                                                                       "directory"]),
        ("export-format", ["campaign", "export", "{foreign}", "--format", "xml"],
         ["--format", "xml"]),
        ("export-store-not-sqlite", ["campaign", "export", "{not_sqlite}", "-o",
                                     o + "/e.csv"], ["notes.sqlite"]),
    ]


CASES = _cases()
SUBPROCESS_CASES = {"timeout-inf", "k-too-big", "campaign-workers"}


def test_corpus_is_large_and_distinct():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)


def _argv(template: list[str], files: dict[str, Path], out: Path) -> list[str]:
    return [a.format(out=out, **files) for a in template]


def _listing(*folders: Path) -> set[Path]:
    return {p for d in folders for p in d.rglob("*")}


def _check(case: str, rc: int, out: str, err: str, words: list[str], outdir: Path,
           before: set[Path], files: dict[str, Path]) -> None:
    assert rc == 2, f"{case}: exit code {rc}, stderr {err!r}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{case}: expected one line on stderr, got {err!r}"
    line = lines[0]
    assert line.startswith("error: "), f"{case}: {line!r}"
    assert "Traceback" not in err and "Usage:" not in err
    for w in words:
        assert w in line, f"{case}: {w!r} not named in {line!r}"
    assert out == "", f"{case}: stdout must stay empty, got {out!r}"
    created = _listing(outdir, files["model"].parent) - before
    if case.startswith("vnncomp"):
        # the VNN-COMP convention: an explicit "error" result, nothing else
        assert {p.name for p in created} == {"result.txt"}, created
        assert (outdir / "result.txt").read_text() == "error\n"
    else:
        assert not created, f"{case}: files left behind: {sorted(map(str, created))}"


@pytest.mark.parametrize("case, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, argv, words, files, tmp_path, capsys):
    outdir = tmp_path / "out"
    outdir.mkdir()
    before = _listing(outdir, files["model"].parent)
    rc = main(_argv(argv, files, outdir))
    cap = capsys.readouterr()
    _check(case, rc, cap.out, cap.err, words, outdir, before, files)


@pytest.mark.parametrize("case", sorted(SUBPROCESS_CASES))
def test_bad_input_real_process(case, files, tmp_path):
    _, argv, words = next(c for c in CASES if c[0] == case)
    outdir = tmp_path / "out"
    outdir.mkdir()
    before = _listing(outdir, files["model"].parent)
    res = subprocess.run([sys.executable, "-m", "nnresilience", *_argv(argv, files, outdir)],
                         capture_output=True, text=True, timeout=120)
    _check(case, res.returncode, res.stdout, res.stderr, words, outdir, before, files)
