"""Divide and conquer: one hard query split into sub-boxes solved on parallel workers.

Why it is sound
---------------
The input box ``[lo, hi]`` is cut by repeated bisection: a cut at ``c`` along dimension
``d`` gives ``[lo, hi]`` with ``hi_d = c`` and ``[lo, hi]`` with ``lo_d = c``, the *same*
float ``c`` on both sides. The leaves therefore cover the box exactly (every point lies in
at least one leaf; points on a cut lie in two, which is harmless). Hence

* a property holds on the box iff it holds on every leaf, and any replayed counterexample
  of a leaf is one of the box (a leaf region is a subset of the original region: an L1
  ball keeps its centre and radius, only its bounding box shrinks);
* a minimum over the box is the minimum of the leaf minima, so
  ``[min leaf lowers, min leaf uppers]`` encloses it. A leaf solved with the cutoff
  ``objective <= best_upper`` that turns out infeasible has minimum ``>= best_upper``;
  it contributes ``lower = cutoff``. A leaf whose distance to the sample is already
  ``>= best_upper`` is pruned without a solve and contributes that distance.

Where to cut
------------
A dimension is worth cutting when the unsafe margin can change a lot across it. The
score of dimension ``i`` is ``width_i * sum_r G[r, i]`` where ``G`` bounds
``|d (A y)_r / d x_i|`` over the box: the product of ``|W|`` matrices and per-neuron
upper bounds on the activation slope from interval bounds (0 for dead ReLUs), taken from
the output rows ``A`` of the unsafe condition back to the inputs. Relative width breaks
ties and flat scores, so every dimension is eventually cut.

Only *input* splitting is done here (sub-boxes are independent tasks); splitting neuron
phases is the search's branching rule (:mod:`nnresilience.search.rules`), whose domains
carry pre-activation clamps. ``split_case(strategy="neurons")`` raises.

Parallel driver
---------------
Sub-tasks are top-level functions of picklable arguments, submitted through an
:class:`nnresilience.parallel.Executor` in a *window* of ``workers`` tasks (not all at
once): a task's time limit is what is left at its submission, a task submitted later
sees the best objective found so far (the cutoff), and after a counterexample only the
running tasks need stopping. Results are collected as they complete.

Decision queries are not divided here any more: ``verify(..., executor=...)`` shares the
frontier of the one branch-and-bound search (:mod:`nnresilience.search`) between the
workers; :func:`verify_divided` is kept as a thin call of it.

Modules: :mod:`.split` (scores, bisection, frontier), :mod:`.window` (executor window, in
:mod:`nnresilience.search.parallel`), :mod:`.decision` (``verify_divided``),
:mod:`.optimise` (``min_perturbation_divided``, ``phi_divided``).
"""

from __future__ import annotations

from nnresilience.divide.decision import verify_divided
from nnresilience.divide.optimise import min_perturbation_divided, phi_divided
from nnresilience.divide.split import (
    SCORES,
    frontier_cases,
    influence,
    split_box,
    split_case,
)
from nnresilience.divide.window import TASK_MARGIN

__all__ = ["SCORES", "TASK_MARGIN", "frontier_cases", "influence", "min_perturbation_divided",
           "phi_divided", "split_box", "split_case", "verify_divided"]
