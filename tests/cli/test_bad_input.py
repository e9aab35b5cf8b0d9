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
    # contracts (hand-written: what `nnres contract check` reads, nothing computed)
    contract = {"schema": "nnresilience.contract", "schema_version": 1,
                "model": {"name": "tiny", "n_inputs": 2, "n_outputs": 3},
                "assumption": {"alpha": 1.5, "k": 1, "norm": "l1",
                               "domain": {"lo": [-1, -1], "hi": [1, 1]}},
                "clauses": [{"id": f"class:{m}", "class": m, "tolerance": 0.01}
                            for m in range(3)],
                "network": {"id": "network:xi", "tolerance": 0.01}}
    f["contract"] = cfg("contract.json", contract)
    f["contract_v99"] = cfg("contract_v99.json", {**contract, "schema_version": 99})
    f["contract_3in"] = cfg("contract_3in.json", {
        **contract, "model": {"name": "wide", "n_inputs": 3, "n_outputs": 3},
        "assumption": {**contract["assumption"],
                       "domain": {"lo": [-1, -1, -1], "hi": [1, 1, 1]}}})
    f["contract_alpha"] = cfg("contract_alpha.json", {
        **contract, "assumption": {**contract["assumption"], "alpha": 0.5}})
    np.save(d / "scale_neg.npy", np.array([1.0, -2.0]))
    f["scale_neg"] = d / "scale_neg.npy"
    f["wide"] = save_onnx(Network([Affine(np.ones((3, 3)), np.zeros(3))]), d / "wide.onnx")
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
    c, j = o + "/c.json", o + "/cmp.json"
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
        ("export-witnesses-stdout", ["campaign", "export", "{foreign}", "--format",
                                     "witnesses-npz"], ["witnesses-npz", "-o FILE.npz"]),
        ("export-witnesses-cex", ["campaign", "export", "{foreign}", "--format",
                                  "witnesses-npz", "-o", o + "/w.npz", "--counterexamples",
                                  o + "/cex"], ["--counterexamples", "witnesses-npz"]),
        # ------------------------------------------------------- contract (create)
        ("contract-alpha", ["contract", m, "--alpha", "0.5", "--domain", "-1:1", "-o", c],
         ["--alpha", ">= 1"]),
        ("contract-alpha-missing", ["contract", m, "--domain", "-1:1", "-o", c], ["--alpha"]),
        ("contract-k", ["contract", m, "--alpha", "1.5", "--k", "3", "--domain", "-1:1", "-o",
                        c], ["--k", "1..2"]),
        ("contract-norm", ["contract", m, "--alpha", "1.5", "--norm", "l7", "--domain", "-1:1",
                           "-o", c], ["--norm", "l7"]),
        ("contract-no-domain", ["contract", m, "--alpha", "1.5", "-o", c],
         ["no input domain", "--domain"]),
        ("contract-domain-empty", ["contract", m, "--alpha", "1.5", "--domain", "1:-1", "-o",
                                   c], ["--domain", "empty"]),
        ("contract-margin", ["contract", m, "--alpha", "1.5", "--domain", "-1:1", "--margin",
                             "1.5", "-o", c], ["--margin", "[0, 1)"]),
        ("contract-timeout", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                              "--timeout", "0", "-o", c], ["--timeout", "positive"]),
        ("contract-workers", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                              "--workers", "0", "-o", c], ["--workers", "at least 1"]),
        ("contract-scheduler", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                                "--scheduler", "localhost:8786", "-o", c], ["--scheduler"]),
        ("contract-two-executors", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                                    "--workers", "2", "--scheduler", "tcp://x:1", "-o", c],
         ["choose one"]),
        ("contract-preset", ["contract", m, "--alpha", "1.5", "--domain", "-1:1", "--preset",
                             "fastest", "-o", c], ["--preset", "fastest"]),
        ("contract-scale-missing", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                                    "--per-input-scale", o + "/none.npy", "-o", c],
         ["--per-input-scale", "none.npy", "no such file"]),
        ("contract-scale-negative", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                                     "--per-input-scale", "{scale_neg}", "-o", c],
         ["scale of input 1"]),
        ("contract-scale-count", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                                  "--per-input-scale", "{x3}", "-o", c], ["6 values", "2"]),
        ("contract-data-width", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                                 "--data", "{x3}", "-o", c], ["--data", "x3.npy"]),
        ("contract-output-dir", ["contract", m, "--alpha", "1.5", "--domain", "-1:1", "-o",
                                 "{dir}"], ["--output", "directory"]),
        ("contract-output-is-model", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                                      "-o", m], ["--output", "input file"]),
        ("contract-html-is-output", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                                     "-o", c, "--html", c], ["same file"]),
        ("contract-witnesses-stdout", ["contract", m, "--alpha", "1.5", "--domain", "-1:1",
                                       "-o", c, "--witnesses", "-"], ["--witnesses", "stdout"]),
        ("contract-model-unsupported", ["contract", "{cos}", "--alpha", "1.5", "--domain",
                                        "-1:1", "-o", c], ["'Cos'"]),
        # -------------------------------------------------------- contract check
        ("check-contract-missing", ["contract", "check", m, o + "/none.json"],
         ["none.json", "no such file"]),
        ("check-contract-not-json", ["contract", "check", m, "{json_syntax}"],
         ["syntax.json", "not a JSON contract"]),
        ("check-not-a-contract", ["contract", "check", m, "{json_key}"],
         ["not an nnresilience contract"]),
        ("check-schema-version", ["contract", "check", m, "{contract_v99}"],
         ["schema version 99"]),
        ("check-contract-alpha", ["contract", "check", m, "{contract_alpha}"],
         ["alpha=0.5"]),
        ("check-model-sizes", ["contract", "check", m, "{contract_3in}"],
         ["3 inputs and 3 outputs", "this one has 2 and 3"]),
        ("check-model-missing", ["contract", "check", o + "/none.onnx", "{contract}"],
         ["none.onnx", "no such file"]),
        ("check-timeout", ["contract", "check", m, "{contract}", "--timeout", "nan"],
         ["--timeout", "finite"]),
        ("check-json-dir", ["contract", "check", m, "{contract}", "--json", "{dir}"],
         ["--json", "directory"]),
        ("check-html-is-contract", ["contract", "check", m, "{contract}", "--html",
                                    "{contract}"], ["--html", "input file"]),
        ("check-backend", ["contract", "check", m, "{contract}", "--backend", "nosolver"],
         ["nosolver"]),
        # ---------------------------------------------------------------- compare
        ("compare-one-model", ["compare", m, "--domain", "-1:1", "--json", j],
         ["at least two models"]),
        ("compare-nothing-to-write", ["compare", m, m, "--domain", "-1:1"],
         ["nothing to write"]),
        ("compare-model-missing", ["compare", m, o + "/none.onnx", "--domain", "-1:1",
                                   "--json", j], ["none.onnx", "no such file"]),
        ("compare-sizes", ["compare", m, "{wide}", "--domain", "-1:1", "--json", j],
         ["wide has 3 inputs", "must share"]),
        ("compare-alpha", ["compare", m, m, "--domain", "-1:1", "--alpha", "nan", "--json",
                           j], ["--alpha", "finite"]),
        ("compare-k", ["compare", m, m, "--domain", "-1:1", "--k", "0", "--json", j],
         ["--k", "1..2"]),
        ("compare-labels-without-data", ["compare", m, m, "--domain", "-1:1", "--labels",
                                         "{y_bad}", "--json", j], ["--labels needs --data"]),
        ("compare-labels-range", ["compare", m, m, "--domain", "-1:1", "--data", "{x}",
                                  "--labels", "{y_bad}", "--json", j], ["label 7", "0..2"]),
        ("compare-labels-count", ["compare", m, m, "--domain", "-1:1", "--data", "{x}",
                                  "--labels", "{y_short}", "--json", j],
         ["1 labels for 2 samples"]),
        ("compare-samples", ["compare", m, m, "--domain", "-1:1", "--data", "{x}",
                             "--samples", "0", "--json", j], ["--samples", "at least 1"]),
        ("compare-data-outside", ["compare", m, m, "--domain", "0:1", "--data", "{x}",
                                  "--json", j], ["outside the domain"]),
        ("compare-data-nan", ["compare", m, m, "--domain", "-1:1", "--data", "{xnan}",
                              "--json", j], ["xnan.npy", "non-finite"]),
        ("compare-page-stdout", ["compare", m, m, "--domain", "-1:1", "-o", "-"],
         ["--output", "stdout"]),
        ("compare-json-is-model", ["compare", m, m, "--domain", "-1:1", "--json", m],
         ["--json", "input file"]),
    ]


CASES = _cases()
SUBPROCESS_CASES = {"timeout-inf", "k-too-big", "campaign-workers", "check-model-sizes"}


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
