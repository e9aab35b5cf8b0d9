"""Cheap counterexample search: sampling, box corners, then projected gradient ascent.

The falsifier runs before any bound or solver (a found counterexample ends the query) and
is also used to *repair* a solver candidate that misses the unsafe set by rounding error:
starting from the candidate, a few small ascent steps usually reach a point that violates
the property strictly.

Objective: ``case.unsafe.max_margin(f(x))`` (max over disjunction terms of min over rows of
``b - A y``); it is ``>= 0`` exactly on the unsafe set. Its (sub)gradient is computed by a
small numpy backward pass through the IR layers (affine: ``W^T``; ReLU/LeakyReLU: masks;
max-pool: routed to the winning member; tanh/sigmoid/arctan: their derivatives), for a
whole batch of restarts at once. Steps are signed-gradient steps (L-infinity geometry)
scaled by the box width, followed by ``region.clip`` (which also projects into an L1
ball by shrinking towards its centre).

Soundness: a point is returned only when ``region.contains(x, tol=0)`` and the float64
:meth:`Network.forward` output satisfies the unsafe condition exactly (no tolerance).
Determinism: with the same ``rng`` seed and a budget that is not exhausted, the same
point is returned.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from nnresilience.network.model import Network


def margin_and_grad(network: Network, case, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``max_margin`` of each row of ``X`` (shape ``(B, n)``) and its gradient ``(B, n)``."""
    vals = network.forward_all(X)
    Y = vals[-1]
    B = Y.shape[0]
    best = np.full(B, -np.inf)
    gy = np.zeros_like(Y)
    for term in case.unsafe.terms:
        m = term.margins(Y)                          # (B, rows)
        r = np.argmin(m, axis=1)
        mt = m[np.arange(B), r]
        better = mt > best
        if np.any(better):
            best = np.where(better, mt, best)
            gy[better] = -term.A[r[better]]
    g = gy
    for layer, h in zip(reversed(network.layers), reversed(vals[:-1]), strict=True):
        g = _backward(layer, h, g)
    return best, g


def _backward(layer, h: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. the layer input ``h`` given the gradient ``g`` w.r.t. its output."""
    kind = layer.kind
    if kind == "affine":
        W = layer.W
        return np.asarray((W.T @ g.T).T) if sp.issparse(W) else g @ W
    if kind == "relu":
        return g * (h > 0.0)
    if kind == "leaky_relu":
        return g * np.where(h >= 0.0, 1.0, layer.slope)
    if kind == "tanh":
        return g * (1.0 - np.tanh(h) ** 2)
    if kind == "sigmoid":
        s = layer.fn(h)
        return g * s * (1.0 - s)
    if kind == "arctan":
        return g / (1.0 + h * h)
    if kind == "maxpool":
        groups = layer.groups
        members = h[:, groups]                       # (B, out, g)
        win = groups[np.arange(groups.shape[0])[None, :], np.argmax(members, axis=2)]
        out = np.zeros_like(h)
        rows = np.broadcast_to(np.arange(h.shape[0])[:, None], win.shape)
        np.add.at(out, (rows, win), g)
        return out
    raise NotImplementedError(f"falsifier: no gradient for layer kind {kind!r}")


def term_margin_and_grad(network: Network, case, X: np.ndarray, term: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Margin of term ``term[s]`` (min over its rows of ``b - A y``) at each row ``X[s]``,
    and its gradient: a targeted version of :func:`margin_and_grad`, so a batch can push
    each restart towards a different disjunct of the unsafe set at once."""
    vals = network.forward_all(X)
    Y = vals[-1]
    B = Y.shape[0]
    best = np.full(B, -np.inf)
    gy = np.zeros_like(Y)
    for t, cond in enumerate(case.unsafe.terms):
        sel = np.flatnonzero(term == t)
        if sel.size == 0:
            continue
        m = cond.margins(Y[sel])
        r = np.argmin(m, axis=1)
        best[sel] = m[np.arange(sel.size), r]
        gy[sel] = -cond.A[r]
    g = gy
    for layer, h in zip(reversed(network.layers), reversed(vals[:-1]), strict=True):
        g = _backward(layer, h, g)
    return best, g


def _hits(network: Network, case, X: np.ndarray) -> np.ndarray | None:
    """First row of ``X`` that lies in the region and whose output is unsafe, exactly."""
    Y = network.forward(X)
    sat = np.atleast_1d(case.unsafe.satisfied(Y))
    for i in np.flatnonzero(sat):
        # Re-evaluate one sample alone: batched BLAS could round differently; and
        # inside the region exactly (an L1 projection can land one ulp outside)
        x = case.region.clip_point(X[i])
        if case.region.contains(x, 0.0) and bool(case.unsafe.satisfied(network.forward(x))):
            return x
    return None


def _ascent(network: Network, case, X: np.ndarray, steps: int, step0: float,
            deadline: float) -> np.ndarray | None:
    """Signed-gradient ascent from the rows of ``X``; returns the first exact hit."""
    region = case.region
    width = region.hi - region.lo
    if region.norm in ("l1", "l2") and region.radius is not None:
        width = np.minimum(width, region.radius)
    for k in range(steps):
        if time.monotonic() > deadline:
            return None
        _, g = margin_and_grad(network, case, X)
        step = step0 * (1.0 - k / max(steps, 1)) + step0 * 0.01
        X = region.clip(X + step * width * np.sign(g))
        hit = _hits(network, case, X)
        if hit is not None:
            return hit
    return None


#: Regions of more inputs than this are attacked by targeted PGD (:func:`pgd_falsify`)
#: rather than by sampling, which is useless in hundreds of dimensions.
SAMPLING_MAX_DIM = 12
#: Networks with more parameters than this run PGD in float32 numpy (torch float32 was
#: 2.5x faster than numpy float64 per step on MNIST 256x6, float32 numpy as fast as
#: torch; importing torch took 2-17 s on the shared machine). Torch (autograd, float32)
#: is used only for ``device`` other than ``cpu``. Smaller nets: float64 numpy.
F32_MIN_PARAMS = 20_000


def falsify(network: Network, case, rng: np.random.Generator | int | None = None,
            budget_seconds: float = 1.0, n_random: int = 1024, pgd_steps: int = 40,
            n_restarts: int = 16, max_rounds: int = 6,
            deadline: float | None = None, device: str = "cpu") -> np.ndarray | None:
    """Search for an input of ``case.region`` whose output satisfies ``case.unsafe``.

    Regions of more than :data:`SAMPLING_MAX_DIM` inputs go to :func:`pgd_falsify`
    (targeted multi-restart PGD). Low-dimensional ones: round 0 evaluates the box midpoint
    (and the ball centre), ``n_random`` random box
    corners and ``n_random`` uniform samples. Every round then draws ``n_random`` fresh
    samples and refines the ``n_restarts`` best points seen (by margin) with signed-gradient
    ascent at decreasing step sizes (3%, 1%, 0.3%, 0.1% of the box width, ``pgd_steps``
    each): unsafe pockets of ACAS Xu-like properties are small and interior, so a wide
    sample followed by local refinement beats long ascent from a few points, which gets
    stuck at box corners. Also ascends from ``n_restarts`` random points with a large step
    (3 rounds of 10%). Stops after ``max_rounds`` rounds, ``budget_seconds`` or at
    ``deadline`` (a ``time.monotonic()`` value), whichever is first.
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(0 if rng is None else rng)
    t_end = time.monotonic() + max(0.0, budget_seconds)
    if deadline is not None:
        t_end = min(t_end, deadline)
    region = case.region
    if region.dim > SAMPLING_MAX_DIM:
        return pgd_falsify(network, case, rng, t_end, device=device)
    starts = [((region.lo + region.hi) / 2.0)[None, :]]
    if region.center is not None:
        starts.append(region.center[None, :])
    corners = np.where(rng.integers(0, 2, size=(n_random, region.dim)) == 1,
                       region.hi, region.lo)
    starts.append(region.clip(corners))
    elite = np.vstack(starts)
    for rnd in range(max_rounds):
        X = np.vstack([elite, region.sample(n_random, rng)])
        hit = _hits(network, case, X)
        if hit is not None or time.monotonic() > t_end:
            return hit
        margins = case.unsafe.max_margin(network.forward(X))
        elite = X[np.argsort(-margins, kind="stable")[:n_restarts]]
        if rnd < 3:
            hit = _ascent(network, case, region.sample(n_restarts, rng), pgd_steps, 0.1, t_end)
            if hit is not None:
                return hit
        for step0 in (0.03, 0.01, 0.003, 0.001):
            hit = _ascent(network, case, elite.copy(), pgd_steps, step0, t_end)
            if hit is not None:
                return hit
        if time.monotonic() > t_end:
            break
    return None


# ---------------------------------------------------------------- targeted PGD
def pgd_falsify(network: Network, case, rng: np.random.Generator, t_end: float, *,
                restarts: int = 16, steps: int = 60, odi_steps: int = 10,
                device: str = "cpu", backend: str = "auto") -> np.ndarray | None:
    """Rounds of :func:`pgd` until ``t_end``: round 0 starts from the box centre (and the
    ball centre) and uniform points, later rounds from uniform points and random corners;
    ``restarts`` starts per round, each attacking every term of the disjunction after
    ``odi_steps`` of output-diversified initialisation."""
    region = case.region
    first = [((region.lo + region.hi) / 2.0)[None, :]]
    if region.center is not None:
        first.append(region.center[None, :])
    rnd = 0
    while time.monotonic() < t_end:
        if rnd == 0:
            X = np.vstack(first + [region.sample(max(1, restarts - len(first)), rng)])
        else:
            corners = np.where(rng.integers(0, 2, size=(restarts // 4, region.dim)) == 1,
                               region.hi, region.lo)
            X = np.vstack([region.sample(restarts - restarts // 4, rng), corners])
        hit = pgd(network, case, X, steps=steps, odi_steps=odi_steps, deadline=t_end,
                  device=device, backend=backend, rng=rng)
        if hit is not None:
            return hit
        rnd += 1
    return None


def pgd(network: Network, case, starts: np.ndarray, *, lo: np.ndarray | None = None,
        hi: np.ndarray | None = None, terms: np.ndarray | None = None, steps: int = 60,
        odi_steps: int = 0, step0: float = 0.125, decay: float = 0.98,
        deadline: float | None = None, device: str = "cpu", backend: str = "auto",
        rng: np.random.Generator | None = None) -> np.ndarray | None:
    """Targeted projected sign-gradient ascent from every start towards every term at once.

    ``starts`` (K, n); ``lo``/``hi`` (K, n): optional sub-boxes of the region each start
    stays in (a search domain's box); ``terms``: the disjuncts to target (default all).
    Each (start, term) pair is one restart, ``K * len(terms)`` rows in one batch: the
    margin of its term (min over the term's rows of ``b - A y``) is pushed up with steps
    of ``step0 * decay**k`` times the box width. ``odi_steps`` first push each row along a
    random direction of the *output* space (output-diversified initialisation, Tashiro et
    al. 2020): starts spread over the output space instead of collapsing onto the same
    gradient path, which found the MNIST-FC counterexamples of issue 12 (256x4 prop 1,
    256x6 prop 3 at eps 0.05) in the first round where plain restarts found none in 30 s.
    ``backend``: ``numpy`` (float64), ``float32`` (numpy), ``torch`` (float32 on
    ``device``) or ``auto`` (torch for a ``device`` other than ``cpu``, else float32 for
    networks above :data:`F32_MIN_PARAMS` parameters, else float64). Every few
    steps the batch is checked in float64 (:func:`_hits`): only an exact hit is returned.
    """
    region = case.region
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    K, n = starts.shape
    T = np.arange(len(case.unsafe.terms)) if terms is None else np.asarray(terms, int)
    if K == 0 or T.size == 0:
        return None
    blo = np.broadcast_to(region.lo, (K, n)) if lo is None else np.maximum(lo, region.lo)
    bhi = np.broadcast_to(region.hi, (K, n)) if hi is None else np.minimum(hi, region.hi)
    X = np.repeat(np.clip(starts, blo, bhi), T.size, axis=0)
    blo = np.repeat(blo, T.size, axis=0)
    bhi = np.repeat(bhi, T.size, axis=0)
    term = np.tile(T, K)
    width = bhi - blo
    if region.norm == "l1" and region.radius is not None:
        width = np.minimum(width, region.radius)
    X = region.clip(X)
    hit = _hits(network, case, X)
    if hit is not None:
        return hit
    if backend == "auto":
        big = network.n_parameters() > F32_MIN_PARAMS
        backend = ("torch" if _has_torch() else "float32") if device != "cpu" else \
            ("float32" if big else "numpy")
    if backend == "float32":
        return _pgd_loop(network, case, _Numpy32Grad(network, case, term), X, blo, bhi,
                         width, steps, odi_steps, step0, decay, deadline, rng, 5)
    if backend == "torch":
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)    # 2 threads under load: ~10x slower (OpenMP barriers)
        try:
            return _pgd_loop(network, case, _TorchGrad(network, case, term, device), X, blo,
                             bhi, width, steps, odi_steps, step0, decay, deadline, rng, 5)
        finally:
            torch.set_num_threads(threads)
    return _pgd_loop(network, case, _NumpyGrad(network, case, term), X, blo, bhi, width,
                     steps, odi_steps, step0, decay, deadline, rng, 1)


def _pgd_loop(network, case, grad, X, blo, bhi, width, steps, odi_steps, step0, decay,
              deadline, rng, check_every: int) -> np.ndarray | None:
    region = case.region
    if odi_steps:
        rng = rng if rng is not None else np.random.default_rng(0)
        w = rng.uniform(-1.0, 1.0, size=(X.shape[0], network.n_outputs))
        for _ in range(odi_steps):
            if deadline is not None and time.monotonic() > deadline:
                return None
            X = region.clip(np.clip(X + step0 * width * np.sign(grad.direction(X, w)),
                                    blo, bhi))
    for k in range(steps):
        if deadline is not None and time.monotonic() > deadline:
            return None
        X = region.clip(np.clip(X + step0 * decay ** k * width * np.sign(grad.margin(X)),
                                blo, bhi))
        if k % check_every == check_every - 1 or k == steps - 1:
            hit = _hits(network, case, X)
            if hit is not None:
                return hit
    return None


attack = pgd    # the search's name for it (seeds from bound minimisers, no ODI)


class _NumpyGrad:
    """Gradients by the numpy backward pass (float64)."""

    def __init__(self, network: Network, case, term: np.ndarray) -> None:
        self.network, self.case, self.term = network, case, term

    def margin(self, X: np.ndarray) -> np.ndarray:
        return term_margin_and_grad(self.network, self.case, X, self.term)[1]

    def direction(self, X: np.ndarray, w: np.ndarray) -> np.ndarray:
        vals = self.network.forward_all(X)
        g = w
        for layer, h in zip(reversed(self.network.layers), reversed(vals[:-1]), strict=True):
            g = _backward(layer, h, g)
        return g


class _Numpy32Grad:
    """Gradients by a float32 numpy forward/backward pass (weights cast once): as fast as
    torch float32 on CPU for these dense nets, without paying for importing torch."""

    def __init__(self, network: Network, case, term: np.ndarray) -> None:
        self.layers = _f32_layers(network)
        terms = case.unsafe.terms
        owner = np.concatenate([np.full(t.A.shape[0], k) for k, t in enumerate(terms)])
        self.At = np.vstack([t.A for t in terms]).T.astype(np.float32)
        self.b = np.concatenate([t.b for t in terms]).astype(np.float32)
        self.mask = np.where(owner[None, :] == term[:, None], 0.0, np.inf).astype(np.float32)

    def _back(self, vals: list, g: np.ndarray) -> np.ndarray:
        for (kind, a, _b), h in zip(reversed(self.layers), reversed(vals[:-1]), strict=True):
            if kind == "affine":
                g = g @ a.T
            elif kind == "sparse_affine":            # a = W (out x in), CSR
                g = np.asarray(a.T @ g.T).T
            elif kind == "relu":
                g = g * (h > 0)
            elif kind == "leaky_relu":
                g = g * np.where(h >= 0, np.float32(1.0), np.float32(a))
            elif kind == "sigmoid":
                sg = 1.0 / (1.0 + np.exp(-h))
                g = g * sg * (1.0 - sg)
            elif kind == "tanh":
                g = g * (1.0 - np.tanh(h) ** 2)
            elif kind == "arctan":
                g = g / (1.0 + h * h)
            else:                                   # maxpool: route to the winner
                members = h[:, a]
                win = a[np.arange(a.shape[0])[None, :], np.argmax(members, axis=2)]
                out = np.zeros_like(h)
                rows = np.broadcast_to(np.arange(h.shape[0])[:, None], win.shape)
                np.add.at(out, (rows, win), g)
                g = out
        return g

    def _forward(self, X: np.ndarray) -> list:
        h = X.astype(np.float32)
        vals = [h]
        for kind, a, b in self.layers:
            if kind == "affine":
                h = h @ a + b
            elif kind == "sparse_affine":
                h = np.asarray(a @ h.T).T + b
            elif kind == "relu":
                h = np.maximum(h, 0)
            elif kind == "leaky_relu":
                h = np.where(h >= 0, h, np.float32(a) * h)
            elif kind == "sigmoid":
                h = 1.0 / (1.0 + np.exp(-h))
            elif kind == "tanh":
                h = np.tanh(h)
            elif kind == "arctan":
                h = np.arctan(h)
            else:
                h = h[:, a].max(axis=2)
            vals.append(h)
        return vals

    def margin(self, X: np.ndarray) -> np.ndarray:
        vals = self._forward(X)
        m = self.b - vals[-1] @ self.At + self.mask
        r = np.argmin(m, axis=1)
        return self._back(vals, -self.At.T[r])

    def direction(self, X: np.ndarray, w: np.ndarray) -> np.ndarray:
        return self._back(self._forward(X), w.astype(np.float32))


_F32: dict = {}
#: a sparse weight matrix (a convolution, a pooling or normalisation map) with more
#: entries than this and at most SPARSE_DENSITY of them non-zero stays sparse in the
#: falsifier. Densified, the two convolutions of a 3x32x32 CIFAR net (16 and 32 channels,
#: stride 2) took 2.2 s and 160 MB before the first PGD step of a 1 s budget.
SPARSE_MIN_ENTRIES = 1_000_000
SPARSE_DENSITY = 0.05


def _keep_sparse(W) -> bool:
    if not sp.issparse(W):
        return False
    size = W.shape[0] * W.shape[1]
    return size > SPARSE_MIN_ENTRIES and W.nnz <= SPARSE_DENSITY * size


def _f32_layers(network: Network) -> list:
    got = _F32.get(id(network))
    if got is not None and got[0] is network:
        return got[1]
    out = []
    for layer in network.layers:
        if layer.kind == "affine" and _keep_sparse(layer.W):
            out.append(("sparse_affine", sp.csr_matrix(layer.W, dtype=np.float32),
                        layer.b.astype(np.float32)))
        elif layer.kind == "affine":
            W = layer.W.toarray() if sp.issparse(layer.W) else layer.W
            out.append(("affine", np.ascontiguousarray(W.T, dtype=np.float32),
                        layer.b.astype(np.float32)))
        elif layer.kind == "maxpool":
            out.append(("maxpool", layer.groups, None))
        else:
            out.append((layer.kind, float(getattr(layer, "slope", 0.0)), None))
    _F32.clear()
    _F32[id(network)] = (network, out)
    return out


class _TorchGrad:
    """Gradients by torch autograd in float32 (the float64 replay decides anyway)."""

    def __init__(self, network: Network, case, term: np.ndarray, device: str) -> None:
        import torch

        self.torch = torch
        self.forward = _torch_net(network, device)
        terms = case.unsafe.terms
        A = np.vstack([t.A for t in terms])
        owner = np.concatenate([np.full(t.A.shape[0], k) for k, t in enumerate(terms)])
        self.f32 = {"dtype": torch.float32, "device": device}
        self.At = torch.tensor(A.T, **self.f32)
        self.bt = torch.tensor(np.concatenate([t.b for t in terms]), **self.f32)
        self.mask = torch.tensor(np.where(owner[None, :] == term[:, None], 0.0, np.inf),
                                 **self.f32)

    def _grad(self, X: np.ndarray, objective) -> np.ndarray:
        x = self.torch.tensor(X, **self.f32, requires_grad=True)
        (g,) = self.torch.autograd.grad(objective(self.forward(x)).sum(), x)
        return g.cpu().numpy()

    def margin(self, X: np.ndarray) -> np.ndarray:
        return self._grad(X, lambda y: (self.bt - y @ self.At + self.mask).min(dim=1).values)

    def direction(self, X: np.ndarray, w: np.ndarray) -> np.ndarray:
        wt = self.torch.tensor(w, **self.f32)
        return self._grad(X, lambda y: (y * wt).sum(dim=1))


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


_TORCH_NETS: dict = {}


def _torch_net(network: Network, device: str):
    """``forward(X) -> logits`` in torch float32 for ``network`` (cached per network)."""
    key = (id(network), device)
    got = _TORCH_NETS.get(key)
    if got is not None and got[0] is network:
        return got[1]
    import torch

    ops = []
    for layer in network.layers:
        if layer.kind == "affine" and _keep_sparse(layer.W):
            W = sp.coo_matrix(layer.W)
            ops.append(("sparse_affine",
                        torch.sparse_coo_tensor(np.vstack([W.row, W.col]), W.data, W.shape,
                                                dtype=torch.float32, device=device,
                                                check_invariants=True).coalesce(),
                        torch.tensor(layer.b, dtype=torch.float32, device=device)))
        elif layer.kind == "affine":
            W = layer.W.toarray() if sp.issparse(layer.W) else layer.W
            ops.append(("affine", torch.tensor(W.T, dtype=torch.float32, device=device),
                        torch.tensor(layer.b, dtype=torch.float32, device=device)))
        elif layer.kind == "maxpool":
            ops.append(("maxpool", torch.tensor(layer.groups, device=device), None))
        else:
            ops.append((layer.kind, float(getattr(layer, "slope", 0.0)), None))

    def forward(h):
        for kind, a, b in ops:
            if kind == "affine":
                h = h @ a + b
            elif kind == "sparse_affine":
                h = torch.sparse.mm(a, h.T).T + b
            elif kind == "relu":
                h = torch.relu(h)
            elif kind == "leaky_relu":
                h = torch.where(h >= 0, h, a * h)
            elif kind == "sigmoid":
                h = torch.sigmoid(h)
            elif kind == "tanh":
                h = torch.tanh(h)
            elif kind == "arctan":
                h = torch.atan(h)
            elif kind == "maxpool":
                h = h[:, a].max(dim=2).values
            else:
                raise NotImplementedError(f"falsifier: no torch op for {kind!r}")
        return h

    _TORCH_NETS.clear()
    _TORCH_NETS[key] = (network, forward)
    return forward


def repair(network: Network, case, x: np.ndarray, steps: int = 30,
           deadline: float | None = None) -> np.ndarray | None:
    """Small ascent steps from a candidate that misses the unsafe set by rounding error.

    Solvers return points on the boundary ``A y = b`` (or a hair outside the box); a few
    steps of relative size 1e-6 .. 1e-3 move them strictly inside when that is possible.
    """
    region = case.region
    x0 = region.clip(np.asarray(x, dtype=np.float64).reshape(1, -1))
    hit = _hits(network, case, x0)
    if hit is not None:
        return hit
    t_end = time.monotonic() + 5.0 if deadline is None else deadline
    for step0 in (1e-6, 1e-5, 1e-4, 1e-3):
        hit = _ascent(network, case, x0.copy(), steps, step0, t_end)
        if hit is not None:
            return hit
    return None


# ------------------------------------------------------------ replaying a candidate
def replay(network, case_or_prop, x: np.ndarray) -> bool:
    """Does ``x`` violate the case (or any case of the property), exactly, in float64?
    ``x`` must lie in the region exactly too (``contains(x, tol=0)``)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    cases = getattr(case_or_prop, "cases", None) or (case_or_prop,)
    y = network.forward(x)
    return any(c.region.contains(x, 0.0) and bool(c.unsafe.satisfied(y)) for c in cases)


def _onnx_check(network, case, x: np.ndarray) -> bool | None:
    """onnxruntime's opinion of ``x`` (None when the network is not from ONNX)."""
    if network.source_format != "onnx" or not network.source:
        return None
    from nnresilience.loaders.onnx import onnxruntime_forward

    y = onnxruntime_forward(network, x)
    if y is None:
        return None
    return bool(case.unsafe.satisfied(np.asarray(y, dtype=np.float64).reshape(-1)))


def confirm(network, case, x: np.ndarray | None, onnx_replay: bool = True,
            deadline: float | None = None):
    """Turn a candidate into a replayed :class:`~nnresilience.results.Counterexample`, or
    None if it is not one.

    The candidate is clipped into the region's box (and L1 ball), replayed in float64 and,
    if it misses the unsafe set, repaired by small ascent steps. Only an exactly violating
    point is returned.
    """
    from nnresilience.results import Counterexample

    if x is None:
        return None
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size != case.region.dim or not np.all(np.isfinite(x)):
        return None
    x = case.region.clip_point(x)
    if not replay(network, case, x):
        x = repair(network, case, x, deadline=deadline)
        if x is not None:
            x = case.region.clip_point(x)
        if x is None or not replay(network, case, x):
            return None
    # the reported output is the model's own (what onnxruntime and a VNN-COMP checker
    # compute): probabilities when the model ends in a softmax the IR leaves out. The
    # property only compares outputs then (Property.check_network), which softmax keeps.
    y = network.probabilities(x) if network.softmax else network.forward(x)
    ort = _onnx_check(network, case, x) if onnx_replay else None
    return Counterexample.from_arrays(x, y, ort)
