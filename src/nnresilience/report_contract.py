"""The human page of a sensor contract (and of a re-check against another model).

What an engineer reads: the assumption (domain, confidence α, top-k, norm, per-input
scale), the guarantee per class as a tolerance with the proven interval of Φ_m behind it,
a chart of the tolerances next to the smallest witnessed breaking perturbation, each
witness pair drawn, and how each number was proven. With a check report the page leads
with the verdict per clause. Plain data in, one self-contained HTML file out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnresilience.contract import json_number
from nnresilience.report_page import (
    Figures,
    FigureTime,
    draw_pair,
    esc,
    figure,
    fmt,
    input_image_shape,
    page,
    write_page,
)

_STATUS_COLOR = {"optimal": "#1565c0", "bounded": "#6a1b9a", "vacuous": "#ef6c00",
                 "unknown": "#9e9e9e"}
_NORM_TEXT = {"l1": "‖ε/s‖₁", "linf": "‖ε/s‖∞", "l2": "‖ε/s‖₂"}


def _norm_text(asm: dict[str, Any]) -> str:
    t = _NORM_TEXT.get(asm["norm"], asm["norm"])
    return t if asm.get("per_input_scale") is not None else t.replace("/s", "")


def _assumption(c: dict[str, Any]) -> str:
    asm = c["assumption"]
    lo, hi = np.asarray(asm["domain"]["lo"]), np.asarray(asm["domain"]["hi"])
    dom = (f"[{fmt(lo[0])}, {fmt(hi[0])}]^{lo.size}" if np.all(lo == lo[0])
           and np.all(hi == hi[0]) else f"a box of {lo.size} intervals (in the JSON)")
    scale = asm.get("per_input_scale")
    scale_txt = "none (every input counts alike)" if scale is None else (
        f"{len(scale)} values, min {fmt(min(scale))}, max {fmt(max(scale))}"
        + (f" (from {esc(asm.get('scale_source'))})" if asm.get("scale_source") else ""))
    model = c["model"]
    return (
        "<div class='box'><table>"
        f"<tr><th>model</th><td>{esc(model.get('path') or model.get('name'))}</td></tr>"
        f"<tr><th>model hash (weights)</th><td><code>{esc(model['content_hash'])}</code>"
        "</td></tr>"
        f"<tr><th>domain D</th><td>{esc(dom)}</td></tr>"
        f"<tr><th>confidence</th><td>p_m(a) ≥ α·p_j(a) for all j ≠ m, α = "
        f"{fmt(asm['alpha'])}</td></tr>"
        f"<tr><th>class must stay in</th><td>the top-{int(asm['k'])}</td></tr>"
        f"<tr><th>perturbation measured as</th><td>{esc(_norm_text(asm))}</td></tr>"
        f"<tr><th>per-input scale s</th><td>{scale_txt}</td></tr>"
        f"<tr><th>margin</th><td>tolerance = proven lower bound × (1 − {fmt(c['margin'])})"
        "</td></tr>"
        f"<tr><th>tool</th><td>{esc(c['tool']['name'])} {esc(c['tool']['version'])}, "
        f"{esc(c.get('created'))}</td></tr></table></div>")


def _clause_table(c: dict[str, Any]) -> str:
    norm = _norm_text(c["assumption"])
    rows = []
    for cl in c["clauses"]:
        p, pr = cl["phi"], cl["proof"]
        name = f"{cl['class']}" + (f" ({cl['class_name']})" if cl.get("class_name") else "")
        color = _STATUS_COLOR.get(cl["status"], "#455a64")
        rows.append(
            f"<tr><td>{esc(name)}</td><td class='num'>{fmt(cl['tolerance'])}</td>"
            f"<td class='num'>{fmt(p['lower'])}</td><td class='num'>{fmt(p['upper'])}</td>"
            f"<td class='st' style='color:{color}'>{esc(cl['status'])}</td>"
            f"<td>{esc(pr.get('backend'))} / {esc(pr.get('bounds_method'))} / "
            f"{esc(pr.get('solver_status'))}</td><td class='num'>{fmt(pr.get('seconds'), 3)}"
            f"</td><td>{esc(cl.get('message'))}</td></tr>")
    net = c["network"]
    xi = net["xi"]
    rows.append(
        f"<tr><td><b>network (Ξ)</b></td><td class='num'><b>{fmt(net['tolerance'])}</b></td>"
        f"<td class='num'>{fmt(xi['lower'])}</td><td class='num'>{fmt(xi['upper'])}</td>"
        f"<td>{'optimal' if xi['optimal'] else 'bounded'}</td><td>argmin class "
        f"{fmt(xi['argmin_class'])}</td><td></td><td></td></tr>")
    return (
        f"<p>Each row guarantees: every input a ∈ D classified as m with confidence α keeps "
        f"m in its top-{int(c['assumption']['k'])} under every perturbation ε with "
        f"a + ε ∈ D and {esc(norm)} &lt; <b>tolerance</b>. Φ_m lies in [lower, upper]: the "
        "lower end is proven by the solver, the upper end is attained by the replayed "
        "witness pair below (a perturbation the network does not tolerate).</p>"
        "<div class='scroll'><table id='clauses'><tr><th>class m</th><th>tolerance</th>"
        "<th>Φ_m lower (proven)</th><th>Φ_m upper (witness)</th><th>status</th>"
        "<th>backend / bounds / solver</th><th>seconds</th><th>note</th></tr>"
        f"{''.join(rows)}</table></div>")


def _chart(c: dict[str, Any], figs: Figures) -> str:
    cls = [cl for cl in c["clauses"] if cl["status"] != "vacuous"]
    if not cls:
        return "<p class='empty'>Every class is vacuous (no input reaches α).</p>"
    fig = figure(max(4.0, 0.6 * len(cls) + 2.0), 3.0)
    ax = fig.add_subplot()
    pos = np.arange(len(cls))
    tol = np.array([json_number(cl["tolerance"]) for cl in cls], float)
    up = np.array([np.nan if cl["phi"]["upper"] is None else json_number(cl["phi"]["upper"])
                   for cl in cls], float)
    finite = np.isfinite(tol)
    top = np.nanmax(np.r_[tol[finite], up[np.isfinite(up)], 0.0]) or 1.0
    ax.bar(pos, np.where(finite, tol, top * 1.1), color=np.where(finite, "#2e7d32",
                                                                 "#a5d6a7"),
           label="tolerated below (proven)")
    ok = np.isfinite(up)
    if ok.any():
        ax.scatter(pos[ok], up[ok], marker="v", color="#c62828", zorder=3,
                   label="witness: not tolerated")
    ax.set_xticks(pos, [str(cl["class"]) for cl in cls])
    ax.set_xlabel("class m")
    ax.set_ylabel(_norm_text(c["assumption"]))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("tolerance per class")
    return (f"<figure>{figs.img(fig, 'tolerance per class')}<figcaption>Green bar: the "
            "perturbation size every confident input of the class tolerates (pale: "
            "unbounded). Red marker: the smallest replayed perturbation found that breaks "
            "it.</figcaption></figure>")


def _witnesses(c: dict[str, Any], figs: Figures, clock: FigureTime, limit: int = 12) -> str:
    shape = input_image_shape(int(c["model"]["n_inputs"]), c["model"].get("input_shape"))
    parts = []
    for cl in [cl for cl in c["clauses"] if cl.get("witness")][:limit]:
        w = cl["witness"]
        cap = (f"‖ε‖ = {fmt(w['epsilon_norm'])}; label {w['label']} → "
               f"{w['perturbed_label']}; premise margin {fmt(w['premise_margin'])} ≥ "
               f"ln α; replayed: {w['replayed']}")
        parts.append(clock.draw(draw_pair, w["a"], w["a_perturbed"],
                                f"class {cl['class']}: witness", shape, figs, cap))
    if not parts:
        return "<p class='empty'>No witness pair (none found in time).</p>"
    return "".join(parts) + clock.note()


def _check_section(chk: dict[str, Any], figs: Figures, clock: FigureTime) -> str:
    rows = []
    for cl in chk["clauses"] + [chk["network"]]:
        p = cl.get("phi") or {}
        v = cl["verdict"]
        rows.append(
            f"<tr><td>{esc(cl['id'])}</td><td class='num'>{fmt(cl['tolerance'])}</td>"
            f"<td class='verdict-{v}'>{esc(v)}</td><td class='num'>{fmt(p.get('lower'))}</td>"
            f"<td class='num'>{fmt(p.get('upper'))}</td><td>{esc(cl['reason'])}</td></tr>")
    model = chk["model"]
    changed = "a different model" if chk["model_changed"] else "the same weights"
    head = (f"<div class='box'>Checked model {esc(model.get('path') or model.get('name'))} "
            f"(<code>{esc(model['content_hash'][:16])}…</code>, {changed} as the contract's): "
            f"<span class='verdict-{chk['verdict']}'>{esc(chk['verdict'])}</span> — "
            + ", ".join(f"{n} {esc(k)}" for k, n in chk["summary"].items()) + "</div>")
    fails = [cl for cl in chk["clauses"] if cl.get("witness")]
    shape = input_image_shape(int(model["n_inputs"]), model.get("input_shape"))
    pics = "".join(clock.draw(draw_pair, cl["witness"]["a"], cl["witness"]["a_perturbed"],
                              f"{cl['id']}: breaking witness on the checked model", shape,
                              figs, f"‖ε‖ = {fmt(cl['witness']['epsilon_norm'])} < "
                                    f"tolerance {fmt(cl['tolerance'])}")
                   for cl in fails[:12]) + clock.note("breaking witness")
    return (head + "<div class='scroll'><table id='verdicts'><tr><th>clause</th>"
            "<th>tolerance</th><th>verdict</th><th>new Φ lower</th><th>new Φ upper</th>"
            f"<th>why</th></tr>{''.join(rows)}</table></div>{pics}")


def render_contract(contract: dict[str, Any], check: dict[str, Any] | None = None,
                    title: str | None = None, deadline: float | None = None) -> str:
    """The page as a string: the contract, and the verdicts of ``check`` if given.
    ``deadline`` (``time.monotonic``): witness pictures that no longer fit are left out
    (:class:`~nnresilience.report_page.FigureTime`); the tables are always complete."""
    figs = Figures()
    clock = FigureTime(deadline)
    chart = clock.draw(_chart, contract, figs, optional=False)     # first: times a figure
    sections = []
    if check is not None:
        sections.append(("Re-check against a model", _check_section(check, figs, clock)))
    sections += [("Assumption", _assumption(contract)),
                 ("Guarantee per class", _clause_table(contract) + chart),
                 ("Witness pairs (perturbations not tolerated)",
                  _witnesses(contract, figs, clock))]
    name = contract["model"].get("name") or "model"
    title = title or (f"Sensor contract check: {name}" if check else f"Sensor contract: {name}")
    sub = f"schema {contract['schema']} v{contract['schema_version']}"
    return page(title, sub, sections, figs)


def write_contract_page(contract: dict[str, Any], path: str | Path,
                        check: dict[str, Any] | None = None) -> Path:
    return write_page(render_contract(contract, check), path)
