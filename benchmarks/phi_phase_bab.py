"""Can phase splits of copy a's first layer raise the certified lower end of Φ_m? (issue 15)

A diagnosis (follow-up phi4 in ``results_phi_digits.md``), not a shipped mechanism.
For one class of a digits net (L1, α = 20, k = 1, D = [0, 1]^64) and a target radius
``r`` (default: the pair attack's replayed norm), it runs a best-first branch and bound
over the first layer's neurons of copy ``a``, three-way: ``z1_i(a) >= δ_i``,
``<= -δ_i``, ``|z1_i(a)| < δ_i`` with ``δ_i = r max_k |W1_ik|`` (the most ``z1_i``
moves on an L1 ball of radius ``r``, so the outer two fix the secant slope of both copies
to 1 or 0). A piece's bound is the L1 vertex bound
(:func:`nnresilience.bounds.vertex_difference.l1_unit_upper`) with those slopes, the
second layer's slope box from interval steps over the piece (``relu(z1_i)`` in
``[0, δ_i]`` for the middle piece), the premise (interval upper bound of the margin
``< ln α`` prunes the piece) and the margin's interval lower bound as the threshold;
an LP (HiGHS) prunes pieces whose half-spaces do not meet ``[0, 1]^64``. The neuron to
split is the undecided one with the largest path weight into the worst flip row. The
lower end is the minimum over open pieces (capped at ``r``).

Second, the **ceiling** of this family: confident inputs ``a`` (replayed in float64,
margin ``>= ln α``) that lie in many middle slabs are searched by projected gradient
(class-``m`` test digits and random points as starts); the fully split piece that
contains such an ``a`` can never be pruned, so no amount of splitting of this kind can
certify more than its bound.

Usage::

    python benchmarks/phi_phase_bab.py --classes 0 1 2 --seconds 60

Prints a markdown table. The interval steps of the piece bounds are not outwardly
rounded (a diagnosis; the vertex bound itself is), so the figures are estimates of
what a sound version would give, not certified radii.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NETS = {"2x50": REPO / "examples" / "digits" / "digits_2x50.onnx"}
DATA = REPO / "examples" / "digits" / "digits_test.npz"


def _interval(W, b, lo, hi):
    Wp, Wn = np.maximum(W, 0.0), np.minimum(W, 0.0)
    return Wp @ lo + Wn @ hi + b, Wp @ hi + Wn @ lo + b


def _slopes(l1, h1, l2, h2):
    """ReLU secant-slope box for copy boxes ``[l1, h1]`` and ``[l2, h2]``."""
    act = (l1 >= 0) & (l2 >= 0)
    ina = (h1 <= 0) & (h2 <= 0)
    return np.where(act, 1.0, 0.0), np.where(ina, 0.0, 1.0)


class PhaseBab:
    """Pieces = one state per first-layer neuron (0 free, 1 on, -1 off, 2 middle)."""

    def __init__(self, net, m: int, r: float, log_alpha: float,
                 choice: str = "weight") -> None:
        from nnresilience.bounds import vertex_difference

        self.vd = vertex_difference
        aff = [la for la in net.layers if la.kind == "affine"]
        if len(aff) != 3:
            raise SystemExit("two hidden layers only (digits 2x50)")
        self.net, self.m, self.r, self.la = net, m, r, log_alpha
        self.choice = choice
        (self.W1, self.b1), (self.W2, self.b2), (self.W3, self.b3) = (
            (la.dense_W(), np.asarray(la.b, float)) for la in aff)
        n_out = self.W3.shape[0]
        others = np.delete(np.arange(n_out), m)
        self.rows = np.zeros((others.size, n_out))
        self.rows[np.arange(others.size), others] = 1.0
        self.rows[:, m] = -1.0
        self.RW, self.Rb = self.rows @ self.W3, self.rows @ self.b3
        self.M1 = np.abs(self.W1).max(1)
        self.delta = r * self.M1
        n_in = self.W1.shape[1]
        self.zlo, self.zhi = _interval(self.W1, self.b1, np.zeros(n_in), np.ones(n_in))

    def _feasible(self, state) -> bool:
        from scipy.optimize import linprog

        W1, b1, d = self.W1, self.b1, self.delta
        A, rhs = [], []
        for i in np.flatnonzero(state == 1):
            A.append(-W1[i])
            rhs.append(b1[i] - d[i])
        for i in np.flatnonzero(state == -1):
            A.append(W1[i])
            rhs.append(-d[i] - b1[i])
        for i in np.flatnonzero(state == 2):
            A += [W1[i], -W1[i]]
            rhs += [d[i] - b1[i], d[i] + b1[i]]
        if not A:
            return True
        res = linprog(np.zeros(W1.shape[1]), A_ub=np.array(A), b_ub=np.array(rhs),
                      bounds=[(0.0, 1.0)] * W1.shape[1], method="highs")
        return res.status != 2

    def evaluate(self, state, lp: bool = True):
        """``None`` (empty), ``("vacuous",)`` or ``("open", radius, weights, undecided)``."""
        d = self.delta
        on, off, mid = state == 1, state == -1, state == 2
        zl = np.where(on, np.maximum(self.zlo, d), self.zlo)
        zh = np.where(off, np.minimum(self.zhi, -d), self.zhi)
        zl = np.where(mid, np.maximum(zl, -d), zl)
        zh = np.where(mid, np.minimum(zh, d), zh)
        if np.any(zl > zh) or (lp and not self._feasible(state)):
            return None
        g1lo, g1hi = _slopes(zl, zh, zl - d, zh + d)
        z2l, z2h = _interval(self.W2, self.b2, np.maximum(zl, 0), np.maximum(zh, 0))
        d2 = self.r * ((np.abs(self.W2) * g1hi[None, :]) @ np.abs(self.W1)).max(1)
        g2lo, g2hi = _slopes(z2l, z2h, z2l - d2, z2h + d2)
        ml, mh = _interval(-self.RW, -self.Rb, np.maximum(z2l, 0), np.maximum(z2h, 0))
        if np.min(mh) < self.la:
            return ("vacuous",)
        theta = np.maximum(self.la, ml)
        L = self.vd.l1_unit_upper(self.net, self.rows, {1: (g1lo, g1hi), 3: (g2lo, g2hi)})
        rad = min(self.r, float(np.min(theta / np.maximum(L, 1e-300))))
        j = int(np.argmax(L / theta))
        w = ((np.abs(self.RW[j]) * g2hi) @ np.abs(self.W2)) * self.M1
        und = (state == 0) & (g1lo != g1hi)
        if self.choice == "sensitivity" and und.any():
            # the brief's rule: among the 8 heaviest undecided neurons, the one whose
            # slope fixed at its worse value (0 or 1) lowers the worst row's L the most
            top = np.argsort(np.where(und, w, -1.0))[::-1][:min(8, int(und.sum()))]
            best, pick = math.inf, top[0]
            for i in top:
                worse = -math.inf
                for g in (0.0, 1.0):
                    lo1, hi1 = g1lo.copy(), g1hi.copy()
                    lo1[i] = hi1[i] = g
                    Li = self.vd.l1_unit_upper(self.net, self.rows[j:j + 1],
                                               {1: (lo1, hi1), 3: (g2lo, g2hi)})
                    worse = max(worse, float(Li[0]))
                if worse < best:
                    best, pick = worse, i
            w = np.zeros_like(w)
            w[pick] = 1.0
        return ("open", rad, w, und)

    def run(self, seconds: float) -> dict:
        t0 = time.perf_counter()
        root = np.zeros(self.W1.shape[0], int)
        ev = self.evaluate(root)
        out = {"root": ev[1], "evals": 1, "empty": 0, "vacuous": 0}
        heap, n = [(ev[1], 0, root, ev)], 0
        while heap and time.perf_counter() - t0 < seconds:
            rad, _, st, ev = heapq.heappop(heap)
            if rad >= self.r or not ev[3].any():
                heapq.heappush(heap, (rad, -1, st, ev))
                break
            i = int(np.argmax(np.where(ev[3], ev[2], -1.0)))
            for s in (1, -1, 2):
                c = st.copy()
                c[i] = s
                e = self.evaluate(c)
                out["evals"] += 1
                if e is None:
                    out["empty"] += 1
                elif e[0] == "vacuous":
                    out["vacuous"] += 1
                else:
                    n += 1
                    heapq.heappush(heap, (e[1], n, c, e))
        out["lower"] = heap[0][0] if heap else self.r
        out["open"] = len(heap)
        out["depth"] = int(np.count_nonzero(heap[0][2])) if heap else 0
        out["seconds"] = time.perf_counter() - t0
        return out

    def ceiling(self, starts: np.ndarray, iters: int = 1500) -> tuple | None:
        """Lowest fully-split piece bound over confident inputs found in many slabs."""
        import torch

        t = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
        W1, b1, W2, b2, W3, b3 = map(t, (self.W1, self.b1, self.W2, self.b2, self.W3,
                                         self.b3))
        A = t(starts).clone().requires_grad_(True)
        opt = torch.optim.Adam([A], lr=0.01)
        d, m = t(self.delta), self.m
        for _ in range(iters):
            z1 = A @ W1.T + b1
            y = torch.relu(torch.relu(z1) @ W2.T + b2) @ W3.T + b3
            marg = y[:, m:m + 1] - torch.cat([y[:, :m], y[:, m + 1:]], 1)
            loss = (torch.relu(z1.abs() - 0.9 * d).sum(1)
                    + 20.0 * torch.relu(self.la + 0.05 - marg).sum(1)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                A.clamp_(0.0, 1.0)
        best = None
        for a in A.detach().numpy():
            y = self.net.forward(a[None])[0]
            margin = float((y[m] - np.delete(y, m)).min())
            if margin < self.la:                 # replayed in float64: not confident
                continue
            z = self.W1 @ a + self.b1
            st = np.where(np.abs(z) < self.delta, 2, np.where(z > 0, 1, -1))
            e = self.evaluate(st, lp=False)
            if e is None or e[0] != "open":
                continue
            if best is None or e[1] < best[0]:
                best = (e[1], int((st == 2).sum()), margin, self._both_layers(a, st))
        return best

    def _both_layers(self, a, state) -> float:
        """The piece bound if the second layer were split the same way around ``a``
        (its slopes fixed where ``|z2(a)|`` exceeds the most the ball can move it)."""
        d = self.delta
        z1 = self.W1 @ a + self.b1
        g1lo = np.where(state == 1, 1.0, 0.0)
        g1hi = np.where(state == -1, 0.0, 1.0)
        z2 = self.W2 @ np.maximum(z1, 0.0) + self.b2
        d2 = self.r * ((np.abs(self.W2) * g1hi[None, :]) @ np.abs(self.W1)).max(1)
        g2lo = np.where(z2 >= d2, 1.0, 0.0)
        g2hi = np.where(z2 <= -d2, 0.0, 1.0)
        y = self.net.forward(a[None])[0]
        theta = np.maximum(self.la, -(self.rows @ y))
        L = self.vd.l1_unit_upper(self.net, self.rows, {1: (g1lo, g1hi), 3: (g2lo, g2hi)})
        del d
        return min(self.r, float(np.min(theta / np.maximum(L, 1e-300))))


def main(argv: list[str] | None = None) -> int:
    from nnresilience.loaders import load_network
    from nnresilience.resilience.pair_attack import attack_pair

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="2x50", choices=sorted(NETS))
    ap.add_argument("--classes", type=int, nargs="+", default=[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--choice", default="weight", choices=["weight", "sensitivity"],
                    help="neuron to split: path weight, or sensitivity of the worst L")
    ap.add_argument("--radius", type=float, default=None,
                    help="target radius (default: the pair attack's norm, 5 s)")
    a = ap.parse_args(argv)
    net = load_network(str(NETS[a.net])).merged()
    la = math.log(20.0)
    data = np.load(DATA)
    lo, hi = np.zeros(64), np.ones(64)
    print("| class | target r | root bound | BaB lower | s | pieces | empty | vacuous "
          "| open | depth of lowest | ceiling (middles, margin) | ceiling, both layers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in a.classes:
        r = a.radius
        if r is None:
            p = attack_pair(net, m, la, 1, "l1", lo, hi, budget=5.0)
            r = float(p[2])
        bab = PhaseBab(net, m, r, la, a.choice)
        res = bab.run(a.seconds)
        starts = np.vstack([data["X"][data["y"] == m][:64],
                            np.random.default_rng(0).random((64, 64))])
        ceil = bab.ceiling(starts)
        cs = "–" if ceil is None else f"{ceil[0]:.4g} ({ceil[1]}, {ceil[2]:.2f}) | {ceil[3]:.4g}"
        print(f"| {m} | {r:.4g} | {res['root']:.4g} | {res['lower']:.4g} | "
              f"{res['seconds']:.0f} | {res['evals']} | {res['empty']} | {res['vacuous']} | "
              f"{res['open']} | {res['depth']} | {cs} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
