"""The HTML report: self-contained, escaped, and really rendered by headless Chromium.

The Chromium test skips only when no Chromium binary is installed AND the ``CI``
environment variable is unset; in CI a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from nnresilience.report import ball_centre, image_shape, render_report, write_report
from nnresilience.results import Counterexample, ResilienceResult, Status, VerificationResult
from nnresilience.store import CampaignStore, query_key

EVIL = "<script>alert('x')</script>&"


def _fill(store: CampaignStore) -> None:
    rng = np.random.default_rng(0)
    for s in range(3):
        center = rng.random(784)
        for d in (0.01, 0.05):
            if d == 0.05 and s != 1:
                x = np.clip(center + d * np.sign(rng.standard_normal(784)), 0, 1)
                res = VerificationResult(Status.VIOLATED, Counterexample.from_arrays(
                    x, rng.random(10)), engine="milp", seconds=0.4)
            else:
                res = VerificationResult(Status.HOLDS if s else Status.UNKNOWN,
                                         engine="reluplex", seconds=2.0 + s)
            store.put(query_key("mnist", {"s": s}, {"radius": d}), "robustness", res,
                      {"network_name": EVIL, "network_path": "/nonexistent/m.onnx",
                       "property_name": f"robust(sample={s}, delta={d})",
                       "params": {"sample": s, "radius": d, "center": center.tolist(),
                                  "label": 3, "norm": "linf"}})
    for m in range(3):
        a = rng.random(5)
        res = ResilienceResult("phi", 0.1 * m, 0.1 * m + 0.05 * (m % 2), m % 2 == 0, cls=m,
                               alpha=1.0, k=1, norm="l1", a=tuple(a),
                               a_perturbed=tuple(a + 0.05 * rng.random(5)), seconds=1.0)
        store.put(query_key("ctg", {"query": "phi"}, {"cls": m}), "phi", res,
                  {"network_name": "ctg", "property_name": f"phi(class={m})",
                   "params": {"cls": m, "alpha": 1.0, "k": 1, "norm": "l1"}})
    store.put(query_key("ctg", {"query": "min_perturbation"}, {"sample": 0}),
              "min_perturbation", ResilienceResult("min_perturbation", 0.2, 0.3, False,
                                                   norm="l1", seconds=0.2),
              {"network_name": "ctg", "params": {"sample": 0, "norm": "l1"}})
    # a VNN-COMP MNIST-style counterexample: the original is the centre of the
    # property's (clipped) L-infinity ball; long names must wrap, not widen the page
    center = rng.integers(0, 256, 784) / 255.0
    eps = 0.05
    lo, hi = np.clip(center - eps, 0, 1), np.clip(center + eps, 0, 1)
    prop = store.path.parent / "mnist_prop_0_0.05.vnnlib"
    lines = [f"(declare-const X_{i} Real)" for i in range(784)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(10)]
    for i in range(784):
        lines += [f"(assert (>= X_{i} {float(lo[i])!r}))",
                  f"(assert (<= X_{i} {float(hi[i])!r}))"]
    lines += ["(assert (>= Y_1 Y_0))"]
    prop.write_text("\n".join(lines) + "\n")
    x = np.clip(center + eps * np.sign(rng.standard_normal(784)), 0, 1)
    store.put(query_key("mnist-net", {"p": 0}, {}), "verify", VerificationResult(
        Status.VIOLATED, Counterexample.from_arrays(x, rng.random(10)), engine="milp",
        seconds=3.0), {"network_name": "mnist-net_256x2_" + "very_long_name_" * 6,
                       "network_path": "/nonexistent/mnist-net_256x2.onnx",
                       "property_name": "prop_0_0.05_" + "x" * 90,
                       "property_path": str(prop), "params": {"timeout": 60}})


@pytest.fixture(scope="module")
def report_path(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    with CampaignStore(tmp_path / "s.sqlite") as st:
        _fill(st)
        out = write_report(st, tmp_path / "out" / "report.html", title=f"T {EVIL}")
    return out


def test_report_is_self_contained_and_escaped(report_path):
    text = report_path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert EVIL not in text and "&lt;script&gt;alert(" in text
    n_img = text.count("<img ")
    expected = int(re.search(r"data-images-expected='(\d+)'", text).group(1))
    # grid + phi + min-perturbation + timing + 2 image robustness counterexamples
    # + 3 tabular phi pairs + 1 VNN-LIB image counterexample (original from the ball)
    assert n_img == expected == 10
    assert text.count('src="data:image/png;base64,') == n_img
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "external resource"
    for heading in ("Summary", "Robustness per sample", "Φ_m per class", "Where the time went",
                    "Counterexamples", "All results"):
        assert heading in text
    # the table lists every answer
    assert len(re.findall(r"<tr><td class='num'>\d+</td>", text)) == 11
    # every witness has its original, the VNN-LIB one too (the centre of its ball):
    # drawn as original / perturbed / difference, captioned with the perturbation
    assert text.count("<figcaption>‖ε‖₁ = ") == 6
    assert text.count("‖ε‖∞ = 0.05,") == 3
    assert not list(report_path.parent.glob(".*tmp"))


def test_report_from_path_and_cli(tmp_path, capsys):
    from nnresilience.cli import main

    with CampaignStore(tmp_path / "s.sqlite") as st:
        _fill(st)
    out = tmp_path / "r.html"
    out.write_text("old")
    assert main(["report", str(tmp_path / "s.sqlite"), "-o", str(out)]) == 0
    assert "All results" in out.read_text()
    assert main(["report", str(tmp_path / "nope.sqlite"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nope.sqlite: no such file" in err and out.read_text().startswith("<!DOCTYPE")


def test_empty_store_renders_without_empty_sections(tmp_path):
    with CampaignStore(tmp_path / "e.sqlite") as st:
        text = render_report(st)
    assert "The store holds no answers yet" in text and "data-images-expected='0'" in text
    assert "<h2>" not in text                     # no section without content


def test_ball_centre_recovers_a_clipped_linf_ball():
    rng = np.random.default_rng(3)
    center = rng.integers(0, 256, 784) / 255.0
    for eps in (0.03, 0.05):
        lo, hi = np.clip(center - eps, 0, 1), np.clip(center + eps, 0, 1)
        np.testing.assert_allclose(ball_centre(lo, hi), center, atol=1e-12)
    lo = np.linspace(0.0, 0.5, 10)
    assert ball_centre(lo, lo + np.linspace(0.1, 0.2, 10)) is None   # not a clipped ball


def test_ball_centre_on_the_mnist_fc_properties(shared_benchmarks):
    """The 15 MNIST-FC centres are test images: every pixel a multiple of 1/255."""
    from nnresilience.spec.vnnlib import read_vnnlib

    for k in range(15):
        p = read_vnnlib(shared_benchmarks / "mnistfc" / f"prop_{k}_0.03.vnnlib", 784, 10)
        c = ball_centre(p.cases[0].region.lo, p.cases[0].region.hi)
        assert c is not None and np.allclose(c * 255, np.round(c * 255), atol=1e-6)


def test_feature_names_label_tabular_witnesses(tmp_path):
    from nnresilience.data import ctg_network, ctg_samples

    net, samples = ctg_network(), ctg_samples()
    x = samples.x[0]
    with CampaignStore(tmp_path / "s.sqlite") as st:
        # names shipped with the CTG network: found by its content hash
        st.put((net.content_hash(), "p", "q"), "robustness", VerificationResult(
            Status.VIOLATED, Counterexample.from_arrays(x + 0.01, [0.0, 1.0, 0.0])),
            {"network_name": "ctg_leaky", "params": {"center": x.tolist(), "sample": 0,
                                                     "radius": 0.01}})
        text = render_report(st)
    assert "(largest: " in text
    assert any(f"{n} +0.01" in text for n in samples.feature_names)


def test_image_shape_detection():
    assert image_shape(784, (1, 784, 1)) == (28, 28)
    assert image_shape(784, (1, 1, 28, 28)) == (28, 28)
    assert image_shape(3072, (1, 3, 32, 32)) == (3, 32, 32)
    assert image_shape(12, (1, 2, 2, 3)) is None          # too small to be a picture
    assert image_shape(5, (1, 1, 1, 5)) is None           # ACAS Xu: tabular
    assert image_shape(21, None) is None


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def test_report_renders_in_headless_chromium(report_path, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium not installed")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=5000"]
    url = report_path.resolve().as_uri()
    shot = tmp_path / "shot.png"
    # one launch: the DOM after the load event (--dump-dom) and a screenshot
    res = subprocess.run(flags + ["--window-size=1400,2400", f"--screenshot={shot}",
                                  "--dump-dom", url], capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    html = res.stdout.decode("utf-8", "replace")
    body = re.search(r"<body[^>]*>", html).group(0)
    loaded = re.search(r'data-images-loaded="(\d+)"', body)
    expected = re.search(r'data-images-expected="(\d+)"', body)
    assert loaded and expected, f"load script did not run: {body}"
    assert int(loaded.group(1)) == int(expected.group(1)) == 10      # every image loaded
    page = int(re.search(r'data-page-width="(\d+)"', body).group(1))
    view = int(re.search(r'data-viewport-width="(\d+)"', body).group(1))
    assert view == 1400 and page <= view, f"page {page} px wider than the viewport"

    assert shot.is_file(), res.stderr.decode()[-2000:]
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    rgb = img[..., :3]
    # non-trivial: many distinct colours (plots, coloured cards), not a blank page
    assert rgb.std() > 0.05
    assert len(np.unique((rgb.reshape(-1, 3) * 255).astype(np.uint8), axis=0)) > 50
