"""Reference implementations used by the test suite to check the real engines.

Nothing here is fast or meant for users: :mod:`nnresilience.testing.bruteforce` decides
tiny piecewise-linear networks exactly by enumerating activation patterns, which is the
ground truth that the MILP/Reluplex engines, the bound methods and ``verify`` are compared
against in property-based tests.
"""

from nnresilience.testing.bruteforce import (
    BruteForceTooLarge,
    brute_force_case,
    brute_force_max_margin,
    brute_force_property,
    random_network,
)

__all__ = [
    "BruteForceTooLarge",
    "brute_force_case",
    "brute_force_max_margin",
    "brute_force_property",
    "random_network",
]
