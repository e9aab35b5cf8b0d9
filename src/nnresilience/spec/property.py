"""A verification property: a disjunction of (input region, unsafe output condition).

The property *holds* when no case has an input in its region whose output satisfies its
condition; it is *violated* by a concrete input that does. VNN-LIB files with several
input boxes (ACAS Xu property 6) become several cases.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from nnresilience.errors import ShapeMismatchError
from nnresilience.spec.condition import OutputCondition, misclassification, not_in_top_k
from nnresilience.spec.region import InputRegion


@dataclass(frozen=True, eq=False)
class Case:
    region: InputRegion
    unsafe: OutputCondition


@dataclass(frozen=True, eq=False)
class Property:
    cases: tuple[Case, ...]
    name: str = "property"
    source: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cases", tuple(self.cases))
        if not self.cases:
            raise ShapeMismatchError("a property needs at least one case")
        d = {c.region.dim for c in self.cases}
        n = {c.unsafe.n_outputs for c in self.cases}
        if len(d) != 1 or len(n) != 1:
            raise ShapeMismatchError("all cases of a property must share input/output sizes")

    @property
    def n_inputs(self) -> int:
        return self.cases[0].region.dim

    @property
    def n_outputs(self) -> int:
        return self.cases[0].unsafe.n_outputs

    def check_network(self, network) -> None:
        """Raise :class:`ShapeMismatchError` if the network's sizes do not match."""
        if network.n_inputs != self.n_inputs:
            raise ShapeMismatchError(
                f"property {self.name!r} has {self.n_inputs} inputs, network "
                f"{network.name!r} has {network.n_inputs}")
        if network.n_outputs != self.n_outputs:
            raise ShapeMismatchError(
                f"property {self.name!r} has {self.n_outputs} outputs, network "
                f"{network.name!r} has {network.n_outputs}")

        if getattr(network, "softmax", False):
            self._check_softmax_rows()

    def _check_softmax_rows(self) -> None:
        """The IR drops a final softmax and every engine reasons on the logits, so only
        rows whose truth softmax does not change may be asked about: ``c (y_i - y_j) <= 0``
        (softmax is strictly increasing in the order of the logits). A threshold on a
        probability (``Y_0 >= 0.9``) or any other combination would be decided on the
        logits, a different question (``Y_0 >= 1.5`` came out "violated" on a softmax
        model), so it is refused."""
        from nnresilience.errors import SpecParseError

        for case in self.cases:
            for term in case.unsafe.terms:
                for a, b in zip(term.A, term.b, strict=True):
                    nz = np.flatnonzero(a)
                    if nz.size == 0 and b >= 0.0:
                        continue        # 0 <= b: true of every output
                    if (nz.size == 2 and b == 0.0 and a[nz[0]] == -a[nz[1]]):
                        continue
                    raise SpecParseError(
                        "the model ends in Softmax, which verification does not encode (it "
                        "reasons on the logits); output constraints must compare two outputs "
                        "(Y_i >= Y_j), which softmax preserves, not thresholds or other "
                        "combinations of the probabilities", self.source or self.name)

    def violated_by(self, x: np.ndarray, y: np.ndarray, tol_in: float = 1e-9) -> bool:
        """Does input ``x`` with output ``y`` violate the property (exactly, in float64)?"""
        return any(c.region.contains(x, tol_in) and bool(c.unsafe.satisfied(y))
                   for c in self.cases)

    def content_hash(self) -> str:
        h = hashlib.sha256()
        for c in self.cases:
            r = c.region
            for arr in (r.lo, r.hi):
                h.update(np.ascontiguousarray(arr).tobytes())
            h.update(repr((r.norm, r.radius)).encode())
            if r.center is not None:
                h.update(np.ascontiguousarray(r.center).tobytes())
            for t in c.unsafe.terms:
                h.update(np.ascontiguousarray(t.A).tobytes())
                h.update(np.ascontiguousarray(t.b).tobytes())
        return h.hexdigest()


def robustness(center: np.ndarray, label: int, radius: float, n_outputs: int,
               norm: str = "linf", domain_lo=None, domain_hi=None, k: int = 1,
               name: str | None = None) -> Property:
    """Local robustness of ``center`` with label ``label`` in a ``norm`` ball of ``radius``.

    Unsafe: some other class reaches ``y_label`` (``k = 1``), or, for the seed-000 top-k
    variant, at least ``k`` other classes do. The ball is intersected with the domain box.
    """
    region = InputRegion.ball(center, radius, norm, domain_lo, domain_hi)
    cond = misclassification(label, n_outputs) if k == 1 else not_in_top_k(label, k, n_outputs)
    return Property((Case(region, cond),),
                    name=name or f"robust(label={label}, {norm}<= {radius:g}, k={k})",
                    meta={"label": int(label), "radius": float(radius), "norm": norm, "k": k})
