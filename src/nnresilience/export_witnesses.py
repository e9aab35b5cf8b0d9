"""Minimally perturbed inputs as data: witness pairs ``(a, a + ε)`` exported as ``.npz``.

Seed 000: "our method also computes minimally perturbed inputs ... which might be included
into ANN training sets". Every optimisation answer of this tool carries such a pair (the
witness of its upper bound, replayed in float64 when it was found), and every violated
robustness query carries a counterexample next to its centre. This module collects them
from a campaign store, a contract or a comparison, and writes one ``.npz`` of plain
arrays (``np.load(..., allow_pickle=False)`` reads it), one row per pair:

=================  =============  ====================================================
key                shape / dtype  meaning
=================  =============  ====================================================
``a``              (n, d) float64 the unperturbed input
``a_perturbed``    (n, d) float64 the perturbed input a + ε
``label``          (n,) int64     the class the pair is about (the class m of Φ_m, the
                                  sample's label of a robustness / minimum-perturbation
                                  query): the label to train ``a_perturbed`` with
``perturbed_label`` (n,) int64    the network's top class at ``a_perturbed`` (-1 when the
                                  model file could not be loaded to compute it)
``norm``           (n,) str       ``l1`` / ``linf`` / ``l2``: how ε was measured
``epsilon``        (n,) float64   ``||a_perturbed - a||`` in that norm (recomputed here;
                                  for a contract with per-input scale: ``||ε / s||``)
``source``         (n,) str       where the pair comes from (store row, contract clause)
``model``          (n,) str       the network's name (file stem)
=================  =============  ====================================================

The vector ε itself is ``a_perturbed - a``. Pairs of networks with different input sizes
cannot share one array: select one network (``network=``, ``--network``) then. From the
command line: ``nnres campaign export STORE --format witnesses-npz -o FILE.npz``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nnresilience.errors import InputDataError
from nnresilience.io import write_atomic

KEYS = ("a", "a_perturbed", "label", "perturbed_label", "norm", "epsilon", "source", "model")


def _norm(eps: np.ndarray, norm: str, scale: np.ndarray | None = None) -> float:
    from nnresilience.contract import weighted_norm

    return weighted_norm(eps, norm, scale)


def _pair(a, b, label: int, norm: str, source: str, model: str,
          perturbed_label: int, scale=None) -> dict[str, Any]:
    a = np.asarray(a, float).reshape(-1)
    b = np.asarray(b, float).reshape(-1)
    return {"a": a, "a_perturbed": b, "label": int(label), "perturbed_label": int(perturbed_label),
            "norm": str(norm), "epsilon": _norm(b - a, norm, scale), "source": source,
            "model": model}


class _Models:
    """Loads each network file once, to compute the top class at ``a_perturbed``."""

    def __init__(self) -> None:
        self._nets: dict[str, Any] = {}

    def top(self, path: str | None, x: np.ndarray) -> int:
        if not path:
            return -1
        if path not in self._nets:
            try:
                from nnresilience.loaders import load_network

                self._nets[path] = load_network(path)
            except Exception:  # noqa: BLE001 - a moved model must not stop the export
                self._nets[path] = None
        net = self._nets[path]
        if net is None or net.n_inputs != x.size:
            return -1
        return int(np.argmax(net.forward(x)))


# ------------------------------------------------------------------------- sources
def pairs_from_store(store, network: str | None = None, *, kind: str | None = None,
                     latest: bool = True) -> list[dict[str, Any]]:
    """Every witness pair of a campaign store (a path or an open
    :class:`~nnresilience.store.CampaignStore`): Φ_m and minimum-perturbation witnesses,
    and violated robustness queries (centre, counterexample). ``network`` keeps only the
    rows of that network (file stem or path), ``kind`` only that kind of query; by default
    only the latest answer of each question counts (``latest=False``: every stored answer,
    as ``campaign export --all``). VNN-LIB ``verify`` rows have no unperturbed point and
    are skipped."""
    from nnresilience.store import CampaignStore

    if isinstance(store, CampaignStore):
        return _pairs_from_records(store.all(kind, latest=latest), network, str(store.path))
    with CampaignStore(store, readonly=True) as st:
        return _pairs_from_records(st.all(kind, latest=latest), network, str(store))


def _pairs_from_records(records, network: str | None, where: str) -> list[dict[str, Any]]:
    models = _Models()
    out = []
    for i, r in enumerate(records):
        if network is not None and network not in (r.network_name, r.network_path):
            continue
        d = r.result
        name = r.network_name or ""
        src = f"{where}#{i + 1}:{r.kind}:{r.property_name or ''}"
        if r.kind in ("phi", "min_perturbation"):
            if d.get("a") is None or d.get("a_perturbed") is None or d.get("cls") is None:
                continue
            b = np.asarray(d["a_perturbed"], float)
            out.append(_pair(d["a"], b, d["cls"], d.get("norm") or r.params.get("norm", "l1"),
                             src, name, models.top(r.network_path, b)))
        elif r.kind == "robustness" and r.status == "violated":
            ce = d.get("counterexample") or {}
            center = r.params.get("center")
            if center is None or ce.get("x") is None:
                continue
            b = np.asarray(ce["x"], float)
            y = ce.get("y")
            top = int(np.argmax(y)) if y else models.top(r.network_path, b)
            out.append(_pair(center, b, r.params["label"], r.params.get("norm", "linf"), src,
                             name, top))
    return out


def pairs_from_results(results: Iterable, network, source: str) -> list[dict[str, Any]]:
    """Pairs of :class:`~nnresilience.results.ResilienceResult` objects (or their dicts)
    computed on ``network``."""
    out = []
    for i, r in enumerate(results):
        d = r if isinstance(r, dict) else r.to_dict()
        if d.get("a") is None or d.get("a_perturbed") is None or d.get("cls") is None:
            continue
        b = np.asarray(d["a_perturbed"], float)
        out.append(_pair(d["a"], b, d["cls"], d.get("norm") or "l1",
                         f"{source}#{i}:{d.get('quantity')}", network.name,
                         int(np.argmax(network.forward(b)))))
    return out


def pairs_from_contract(contract: dict[str, Any], source: str = "contract"
                        ) -> list[dict[str, Any]]:
    """The witness pair of every class clause of a contract (or of a check report: the
    breaking witnesses); ε is measured with the contract's per-input scale."""
    asm = contract.get("assumption") or contract.get("contract", {}).get("assumption", {})
    scale = asm.get("per_input_scale")
    scale = None if scale is None else np.asarray(scale, float)
    model = contract.get("model", {}).get("name", "")
    out = []
    for cl in contract.get("clauses", []):
        w = cl.get("witness")
        if not w:
            continue
        out.append(_pair(w["a"], w["a_perturbed"], w["label"], asm.get("norm", "l1"),
                         f"{source}:{cl['id']}", model, w["perturbed_label"], scale))
    return out


def pairs_from_compare(cmp: dict[str, Any], source: str = "compare") -> list[dict[str, Any]]:
    """Every witness pair of a comparison: each model's Φ_m witnesses and the minimally
    perturbed version of every sample (its unperturbed point is the sample itself)."""
    p = cmp["parameters"]
    X = p.get("sample_inputs")
    models = _Models()
    out = []
    for m in cmp["models"]:
        for r in m["phi"]:
            if r.get("a") is None or r.get("a_perturbed") is None:
                continue
            b = np.asarray(r["a_perturbed"], float)
            out.append(_pair(r["a"], b, r["class"], p["norm"],
                             f"{source}:{m['name']}:phi:class {r['class']}", m["name"],
                             models.top(m.get("path"), b)))
        for r in m["min_perturbation"]:
            if r.get("a_perturbed") is None or X is None:
                continue
            b = np.asarray(r["a_perturbed"], float)
            out.append(_pair(X[r["sample"]], b, r["label"], p["norm"],
                             f"{source}:{m['name']}:sample {r['sample']}", m["name"],
                             models.top(m.get("path"), b)))
    return out


# --------------------------------------------------------------------------- write
def witness_arrays(pairs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The ``.npz`` arrays of a list of pairs (see the module docstring)."""
    sizes = sorted({p["a"].size for p in pairs})
    if len(sizes) > 1:
        models = sorted({p["model"] for p in pairs})
        raise InputDataError(f"witness pairs of networks with different input sizes {sizes} "
                             f"({', '.join(models)}): export one network at a time "
                             "(--network NAME)")
    d = sizes[0] if sizes else 0

    def strings(key: str) -> np.ndarray:
        vals = [p[key] for p in pairs]
        width = max((len(v) for v in vals), default=1)
        return np.array(vals, dtype=f"<U{max(width, 1)}")

    return {
        "a": np.array([p["a"] for p in pairs], float).reshape(len(pairs), d),
        "a_perturbed": np.array([p["a_perturbed"] for p in pairs], float).reshape(len(pairs),
                                                                                 d),
        "label": np.array([p["label"] for p in pairs], np.int64),
        "perturbed_label": np.array([p["perturbed_label"] for p in pairs], np.int64),
        "norm": strings("norm"),
        "epsilon": np.array([p["epsilon"] for p in pairs], float),
        "source": strings("source"),
        "model": strings("model"),
    }


def npz_bytes(pairs: list[dict[str, Any]]) -> bytes:
    """The ``.npz`` file of ``pairs`` as bytes (so a command can stage it with its other
    outputs and write it atomically)."""
    buf = io.BytesIO()
    np.savez(buf, **witness_arrays(pairs))
    return buf.getvalue()


Writer = Callable[[Path, bytes], Any]


def write_witnesses_npz(pairs: list[dict[str, Any]], path: str | Path,
                        writer: Writer = write_atomic) -> int:
    """Write ``pairs`` to ``path`` (.npz; atomically by default, or through ``writer``,
    e.g. a command's staged outputs); return how many rows were written."""
    writer(Path(path), npz_bytes(pairs))
    return len(pairs)


def export_store_witnesses(store, path: str | Path, network: str | None = None, *,
                           kind: str | None = None, latest: bool = True,
                           writer: Writer = write_atomic) -> int:
    """Every witness pair of ``store`` (see :func:`pairs_from_store`) to ``path``; what
    ``nnres campaign export STORE --format witnesses-npz -o PATH`` calls. Returns the
    number of pairs."""
    return write_witnesses_npz(pairs_from_store(store, network, kind=kind, latest=latest),
                               path, writer)
