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
