"""Reference implementations used by the test suite to check the real engines.

Nothing here is fast or meant for users: :mod:`nnresilience.testing.bruteforce` decides
tiny piecewise-linear networks exactly by enumerating activation patterns, which is the
ground truth that the MILP/Reluplex engines, the bound methods and ``verify`` are compared
against in property-based tests. :mod:`nnresilience.testing.certified` does the same with
a rigorous (solver- and rounding-proof) upper bound, and :mod:`nnresilience.testing.planted`
builds adversarial instances with a planted answer on top of it (issue 11).
"""

from nnresilience.testing.bruteforce import (
    BruteForceTooLarge,
    brute_force_case,
    brute_force_max_margin,
    brute_force_property,
    random_network,
)
from nnresilience.testing.certified import CertificationError, certified_max_margin
from nnresilience.testing.planted import PlantedInstance, planted_instance, planted_instances

__all__ = [
    "BruteForceTooLarge",
    "CertificationError",
    "PlantedInstance",
    "brute_force_case",
    "brute_force_max_margin",
    "brute_force_property",
    "certified_max_margin",
    "planted_instance",
    "planted_instances",
    "random_network",
]
