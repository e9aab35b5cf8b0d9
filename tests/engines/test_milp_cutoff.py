"""A cutoff "proof" from a solver that calls the (always feasible) margin model empty.

Found by the unseen-network sweep (``benchmarks/unseen_sweep.py``): a 2-5-4-3 ReLU net
whose first layer has weights and biases of 1e11..6e11. HiGHS's presolve calls the margin
model infeasible with or without the cutoff; under the cutoff the backend reads that as
"nothing beats the cutoff", i.e. a proven margin below -τ, and the engine answered
``holds`` on a property that a known input violates by 696 (1e-9 of the logits).
"""

from __future__ import annotations

import math
import time

import numpy as np

from nnresilience.backends.base import SolveLimits, SolveResult, SolveStatus
from nnresilience.bounds import compute_bounds
from nnresilience.engines.milp import MilpEngine, confirm_cutoff
from nnresilience.network.layers import Affine, ReLU
from nnresilience.network.model import Network
from nnresilience.results import Status
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case
from nnresilience.spec.region import InputRegion

W1 = [[34860744704.0, -596375306240.0], [108927623168.0, -69473271808.0],
      [-154051837952.0, 93533634560.0], [244344487936.0, -9116444672.0],
      [-420662116352.0, -163308290048.0]]
B1 = [174482522112.0, 261869830144.0, -395366727680.0, -532361052160.0, -21230147584.0]
W2 = [[0.6140751838684082, 0.7196462154388428, 0.19606204330921173, -0.7616076469421387,
       0.6116030812263489],
      [0.44539251923561096, 0.024886127561330795, -0.4435877501964569, 0.05630984157323837,
       0.5094282627105713],
      [0.3914868235588074, 0.10426270216703415, 0.032424185425043106, -0.5021935701370239,
       -0.45343634486198425],
      [-0.08028817176818848, 0.8496208190917969, 0.39254218339920044, 0.3203417658805847,
       0.35798779129981995]]
B2 = [0.9091827273368835, 0.15202559530735016, 0.7328523397445679, -0.6128806471824646]
W3 = [[0.33853334188461304, -0.09335032850503922, 0.6080154180526733, 1.3614556789398193],
      [-0.14082464575767517, 0.14489957690238953, -1.6976659297943115, 0.3578086793422699],
      [0.16455265879631042, 0.07966424524784088, -0.6153828501701355, -1.2597686052322388]]
B3 = [-0.2876690626144409, 0.0960664376616478, 0.21666769683361053]
WITNESS = np.array([0.2553230915613365, -0.7888957974450759])


def _instance() -> tuple[Network, Case]:
    net = Network([Affine(np.array(W1), np.array(B1)), ReLU(5),
                   Affine(np.array(W2), np.array(B2)), ReLU(4),
                   Affine(np.array(W3), np.array(B3))])
    region = InputRegion.box([-0.06755832540016826, -0.7893180450622395],
                             [0.39479508057387525, -0.3824626516077807])
    # y2 - y1 >= 105973669126.93446  or  (y2 >= -275504416696.89984 and
    # y1 >= -228508288019.5965)  or  y2 <= -380163697414.78156, as rows A y <= b
    unsafe = OutputCondition((
        Conjunction([[0.0, 1.0, -1.0]], [-105973669126.93446]),
        Conjunction([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0]],
                    [275504416696.89984, 228508288019.5965]),
        Conjunction([[0.0, 0.0, 1.0]], [-380163697414.78156])), 3)
    return net, Case(region, unsafe)


def test_the_instance_is_violated_by_a_replayed_witness():
    net, case = _instance()
    assert case.region.contains(WITNESS, 0.0)
    assert bool(case.unsafe.satisfied(net.forward(WITNESS)))


def test_milp_engine_does_not_prove_a_violated_large_magnitude_case():
    net, case = _instance()
    bounds = compute_bounds(net, case.region, method="symbolic")
    ans = MilpEngine(backend="highs").check(net, case, bounds, timeout=20.0)
    assert ans.status is not Status.HOLDS, ans.message
    if ans.status is Status.VIOLATED:
        assert bool(case.unsafe.satisfied(net.forward(ans.x)))


class _Stub:
    """A backend that stops on any cutoff without a point; without one it answers
    ``uncut`` (a status) with or without a point."""

    name = "stub"

    def __init__(self, uncut: SolveStatus, point: bool) -> None:
        self.uncut, self.point, self.calls = uncut, point, []

    def solve(self, arrays, limits: SolveLimits) -> SolveResult:
        self.calls.append(limits)
        if limits.cutoff is not None:
            return SolveResult(SolveStatus.LIMIT, None, None, limits.cutoff, 0.0,
                               {"native_status": "Infeasible"})
        x = np.zeros(2) if self.point else None
        return SolveResult(self.uncut, x, None, -math.inf if x is None else 0.0, 0.0,
                           {"native_status": self.uncut.value})


def test_confirm_cutoff_rejects_a_solver_that_calls_the_uncut_model_empty():
    stub = _Stub(SolveStatus.INFEASIBLE, point=False)
    first = stub.solve(None, SolveLimits(cutoff=1.0))
    got = confirm_cutoff(stub, None, first, None)
    assert got.status is SolveStatus.INFEASIBLE
    assert stub.calls[-1].cutoff is None and stub.calls[-1].stop_at_first_solution


def test_confirm_cutoff_keeps_the_bound_when_the_uncut_model_has_a_point():
    stub = _Stub(SolveStatus.LIMIT, point=True)
    first = stub.solve(None, SolveLimits(cutoff=1.0))
    got = confirm_cutoff(stub, None, first, None)
    assert got.status is SolveStatus.LIMIT and got.dual_bound == 1.0
    # an answer that is not a bare cutoff stop is never re-solved
    n = len(stub.calls)
    opt = SolveResult(SolveStatus.OPTIMAL, np.zeros(2), 0.0, 0.0, 0.0, {})
    assert confirm_cutoff(stub, None, opt, None) is opt and len(stub.calls) == n


def test_confirm_cutoff_without_a_point_in_time_is_no_proof():
    # the re-check hits its limit without a point, or no time is left: unconfirmed
    stub = _Stub(SolveStatus.LIMIT, point=False)
    first = stub.solve(None, SolveLimits(cutoff=1.0))
    assert confirm_cutoff(stub, None, first, None).status is SolveStatus.INFEASIBLE
    n = len(stub.calls)
    got = confirm_cutoff(stub, None, first, time.perf_counter() - 1.0)
    assert got.status is SolveStatus.INFEASIBLE and len(stub.calls) == n


def _box_model(empty: bool):
    """Two variables in [0, 1] and one row ``x0 + x1 >= 3`` (empty) or ``>= 1`` (not)."""
    from nnresilience.encode.model import MilpModel

    model = MilpModel()
    x = model.add_vars(2, np.zeros(2), np.ones(2))
    model.add_terms(np.zeros(2, np.int64), x, np.ones(2), 1, 3.0 if empty else 1.0, np.inf)
    return model.arrays()


def test_a_piece_that_may_be_empty_needs_a_farkas_proof():
    """Resilience pieces can legitimately be empty, so "no point without the cutoff" is
    accepted there only with a checked Farkas certificate of the LP relaxation."""
    stub = _Stub(SolveStatus.INFEASIBLE, point=False)
    first = stub.solve(None, SolveLimits(cutoff=1.0))
    empty = confirm_cutoff(stub, _box_model(True), first, None, may_be_empty=True)
    assert empty.status is SolveStatus.LIMIT and empty.dual_bound == 1.0
    assert empty.stats["cutoff_confirmed"] == "empty (Farkas)"
    # the solver calls a model with points empty: neither the cutoff nor emptiness holds
    lying = confirm_cutoff(stub, _box_model(False), first, None, may_be_empty=True)
    assert lying.status is SolveStatus.INFEASIBLE
    # without ``may_be_empty`` (a margin form) emptiness never counts
    assert confirm_cutoff(stub, _box_model(True), first, None).status is SolveStatus.INFEASIBLE


def test_a_piece_empty_only_by_integrality_needs_a_second_solver():
    """No Farkas certificate exists when only integrality empties a model: then a second
    solver must find no point either; one that finds a point exposes the first."""
    stub = _Stub(SolveStatus.INFEASIBLE, point=False)
    first = stub.solve(None, SolveLimits(cutoff=1.0))
    feasible_lp = _box_model(False)
    agree = confirm_cutoff(stub, feasible_lp, first, None, may_be_empty=True,
                           second=_Stub(SolveStatus.INFEASIBLE, point=False))
    assert agree.status is SolveStatus.LIMIT and agree.dual_bound == 1.0
    assert agree.stats["cutoff_confirmed"] == "empty (stub and stub)"
    exposed = confirm_cutoff(stub, feasible_lp, first, None, may_be_empty=True,
                             second=_Stub(SolveStatus.LIMIT, point=True))
    assert exposed.status is SolveStatus.INFEASIBLE
    assert "found a point" in exposed.stats["native_status"]
    silent = confirm_cutoff(stub, feasible_lp, first, None, may_be_empty=True,
                            second=_Stub(SolveStatus.LIMIT, point=False))
    assert silent.status is SolveStatus.INFEASIBLE


def test_resilience_solves_confirm_their_cutoff(monkeypatch):
    """``resilience.common.solve_certified`` with a cutoff goes through the confirmation:
    a backend that calls every model empty, with a second solver that finds a point,
    gives no bound (``failed``), not the cutoff."""
    from nnresilience.resilience import DEFAULT, common
    from nnresilience.resilience.encode import build_phi_mip, network_bounds

    net = Network([Affine(np.array([[1.0, -1.0], [0.5, 1.0]]), np.zeros(2)), ReLU(2),
                   Affine(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.0, 0.1]))])
    settings = DEFAULT.with_(pair_attack=0.0, diff_lower=False, diff_rows=False,
                             diff_cut=False)
    lo, hi = np.zeros(2), np.ones(2)
    bounds = network_bounds(net, lo, hi, settings)
    mip = build_phi_mip(net, 0, math.log(1.1), 1, "l1", lo, hi, bounds, settings)
    stub = _Stub(SolveStatus.INFEASIBLE, point=False)
    monkeypatch.setattr(common, "make_backend", lambda *a, **k: _Tolerant(stub))
    import nnresilience.backends.registry as registry

    monkeypatch.setattr(registry, "second_backend",
                        lambda *a, **k: _Stub(SolveStatus.LIMIT, point=True))
    sol = common.solve_certified(mip, settings, 10.0, relax=True, cutoff=0.5)
    assert sol.cert.failed and sol.cert.lower == -math.inf
    assert "cutoff not confirmed" in sol.res.stats["native_status"]


class _Tolerant:
    """The stub with the tolerances the certified solve asks for."""

    def __init__(self, inner: _Stub) -> None:
        self.inner, self.name = inner, "stub"

    def tolerances(self):
        from nnresilience.backends.base import Tolerances

        return Tolerances(1e-6, 1e-6)

    def solve(self, arrays, limits):
        return self.inner.solve(arrays, limits)
