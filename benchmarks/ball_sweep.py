"""Wrong-answer sweep of ``verify`` on L1 / L2 / L-infinity ball regions (API only).

The VNN-LIB sweeps (``unseen_sweep.py``) only see boxes; balls reach ``verify`` through
the Python API (``InputRegion.ball``) and the resilience queries. Instances: small
random ReLU / LeakyReLU / max-pool / mixed nets
(:func:`~nnresilience.testing.bruteforce.random_network`, 2-4 inputs), a ball of radius
0.05-1 around a random centre inside ``[-2, 2]^d``, and one output comparison
``y_i - y_j >= t`` with three thresholds:

* ``rand``: the 0.9 quantile of 4,000 sampled ``y_i - y_j`` (violated by samples);
* ``tie``: 1e-9 (relative) below the best sample: violated, that sample is a witness;
* ``hold`` (L1 / L-infinity): 1e-6 (relative) above the brute-force maximum over the
  ball (:func:`~nnresilience.testing.bruteforce.brute_force_max_margin`, which states
  the L1 ball exactly): holds.

Every engine (``auto``, ``bab``, ``milp``, ``reluplex``, ``none``), falsifier off and on.
A **wrong answer**: ``holds`` on a known violation; ``violated`` whose witness is not in
the ball *exactly* (L1 distance compared in exact arithmetic, box bounds without
tolerance) or does not replay, or on a brute-force hold; a crash; an overrun of the
timeout + max(1 s, 5 %). ``EngineUnsupportedError`` (Reluplex on balls / max-pool) is
counted apart.

    python benchmarks/ball_sweep.py --n 24 --seed 3000
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from fractions import Fraction

import numpy as np

ENGINES = ("auto", "bab", "milp", "reluplex", "none")


def _inside_exactly(region, x: np.ndarray) -> bool:
    if np.any(x < region.lo) or np.any(x > region.hi):
        return False
    if region.norm == "l1" and region.center is not None:
        d = sum((abs(Fraction(float(a)) - Fraction(float(b)))
                 for a, b in zip(x, region.center, strict=True)), Fraction(0))
        return d <= Fraction(float(region.radius))
    if region.norm == "l2" and region.center is not None:
        return float(np.linalg.norm(x - region.center)) <= region.radius
    return True


def main(argv: list[str] | None = None) -> int:
    from nnresilience.errors import EngineUnsupportedError
    from nnresilience.spec.condition import Conjunction, OutputCondition
    from nnresilience.spec.property import Case, Property
    from nnresilience.spec.region import InputRegion
    from nnresilience.testing.bruteforce import (
        BruteForceTooLarge,
        brute_force_max_margin,
        random_network,
    )
    from nnresilience.verify import verify

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=24, help="instances")
    ap.add_argument("--seed", type=int, default=3000, help="first seed")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per query")
    args = ap.parse_args(argv)
    limit = args.timeout + max(1.0, 0.05 * args.timeout)
    counts: dict = collections.defaultdict(collections.Counter)
    wrong: list[str] = []
    t_start = time.monotonic()
    for seed in range(args.seed, args.seed + args.n):
        rng = np.random.default_rng(seed)
        d = int(rng.integers(2, 5))
        kind = str(rng.choice(["relu", "leaky", "maxpool", "mixed"]))
        net = random_network(rng, [d, 5, 4, 3], kind=kind, scale=1.5)
        c, r = rng.uniform(-1, 1, d), float(rng.uniform(0.05, 1.0))
        norm = str(rng.choice(["l1", "l2", "linf"]))
        region = InputRegion.ball(c, r, norm, -2.0, 2.0)
        X = region.sample(4000, rng)
        i, j = (int(v) for v in rng.choice(3, 2, replace=False))
        # the samples' own values, one row at a time (the replay's forward pass)
        diff = np.array([float(y[i] - y[j]) for y in (net.forward(x) for x in X)])
        inside = np.array([_inside_exactly(region, x) for x in X])
        diff = np.where(inside, diff, -np.inf)
        best = float(diff.max())
        A = np.zeros((1, 3))
        A[0, i], A[0, j] = -1.0, 1.0
        queries = [("rand", float(np.quantile(diff[inside], 0.9))),
                   ("tie", best - 1e-9 * max(1.0, abs(best)))]
        if norm != "l2":
            probe = OutputCondition((Conjunction(A, np.array([0.0])),), 3)   # y_i - y_j
            try:
                bf = brute_force_max_margin(net, Case(region, probe))
            except (BruteForceTooLarge, RuntimeError):
                bf = None
            if bf is not None and np.isfinite(bf[0]):
                queries.append(("hold", float(bf[0]) + 1e-6 * max(1.0, abs(float(bf[0])))))
        for name, t in queries:
            prop = Property((Case(region, OutputCondition((Conjunction(A, np.array([-t])),),
                                                          3)),))
            known = bool(np.any(diff >= t))
            for eng in ENGINES:
                for fb in (0.0, 0.3):
                    c_ = counts[(norm, eng)]
                    t0 = time.monotonic()
                    try:
                        res = verify(net, prop, engine=eng, timeout=args.timeout,
                                     falsify_budget=fb, seed=seed)
                    except EngineUnsupportedError:
                        c_["unsupported"] += 1
                        continue
                    except Exception as exc:    # a crash is a finding
                        c_["queries"] += 1
                        c_["wrong"] += 1
                        wrong.append(f"| {seed} | {norm} | {kind} | {name} | {eng} | {fb:g} | "
                                     f"crash | {type(exc).__name__}: {str(exc)[:80]} |")
                        continue
                    dt = time.monotonic() - t0
                    st = res.status.value
                    c_["queries"] += 1
                    c_[st] += 1
                    why = ""
                    if st == "violated":
                        x = res.counterexample.x_array
                        y = net.forward(x)
                        if not _inside_exactly(region, x):
                            why = "witness outside the ball"
                        elif not y[i] - y[j] >= t:
                            why = "witness does not replay"
                        elif name == "hold":
                            why = "violated on a brute-force hold"
                    elif st == "holds" and known:
                        why = "holds on a known violation"
                    row = f"| {seed} | {norm} | {kind} | {name} | {eng} | {fb:g} | {st} | "
                    if why:
                        c_["wrong"] += 1
                        wrong.append(row + why + " |")
                    if dt > limit:
                        c_["overrun"] += 1
                        wrong.append(row + f"overrun {dt:.2f} s |")
    print(f"# Ball-region sweep: {args.n} instances from seed {args.seed}, timeout "
          f"{args.timeout:g} s; {time.monotonic() - t_start:.0f} s\n")
    print("| norm | engine | queries | holds | violated | unknown | wrong | overrun | "
          "unsupported |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    tot = collections.Counter()
    for (norm, eng), c_ in sorted(counts.items()):
        tot.update(c_)
        print(f"| {norm} | {eng} | {c_['queries']} | {c_['holds']} | {c_['violated']} | "
              f"{c_['unknown']} | {c_['wrong']} | {c_['overrun']} | {c_['unsupported']} |")
    print(f"| **all** | | {tot['queries']} | {tot['holds']} | {tot['violated']} | "
          f"{tot['unknown']} | {tot['wrong']} | {tot['overrun']} | {tot['unsupported']} |")
    if wrong:
        print("\n| seed | norm | net | query | engine | falsify | answer | problem |")
        print("|---:|---|---|---|---|---:|---|---|")
        print("\n".join(wrong))
    else:
        print("\nNo wrong answers, no overruns.")
    return 1 if tot["wrong"] + tot["overrun"] else 0


if __name__ == "__main__":
    sys.exit(main())
