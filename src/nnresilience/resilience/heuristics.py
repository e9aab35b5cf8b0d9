"""Heuristic 3 of seed 000 §5: an initial confident input ``a_ini`` from data.

The paper finds ``a_ini`` (an input classified to m with ratio alpha), solves the
per-sample problem at it (``Φ_ini``) and starts the full MIP from that pair with the extra
row ``sum eps_abs <= Φ_ini``. Any pair that passes the replay is a valid start and an
upper bound, so the choice of ``a_ini`` only affects speed; the data sample is chosen by
its logit margin (``ini_pick``) and the premise MIP is the fallback without data.
"""

from __future__ import annotations

import numpy as np


def pick_initial_input(network, data: np.ndarray | None, m: int, log_alpha: float,
                       lo: np.ndarray, hi: np.ndarray, pick: str = "closest"
                       ) -> np.ndarray | None:
    """A data row inside D whose margin ``min_j (y_m - y_j)`` meets ``ln(alpha)`` exactly
    (float64, no slack: the pair built on it is a witness).

    ``pick='closest'`` takes the smallest such margin (a sample near the premise boundary,
    usually nearest to the flip set, hence the smallest Φ_ini); ``'highest'`` the largest.
    Returns None when no row qualifies.
    """
    if data is None or len(data) == 0:
        return None
    X = network.check_input(np.asarray(data, float))
    inside = np.all((lo - 1e-12 <= X) & (hi + 1e-12 >= X), axis=1)
    if not inside.any():
        return None
    X = np.clip(X[inside], lo, hi)
    Y = network.forward(X)
    margin = Y[:, m] - np.delete(Y, m, axis=1).max(axis=1)
    ok = margin >= log_alpha
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    j = idx[np.argmin(margin[idx])] if pick == "closest" else idx[np.argmax(margin[idx])]
    return X[j].copy()
