"""Properties: input regions, output conditions (DNF), VNN-LIB reading and writing."""

from nnresilience.spec.condition import (
    Conjunction,
    OutputCondition,
    misclassification,
    not_in_top_k,
)
from nnresilience.spec.property import Case, Property, robustness
from nnresilience.spec.region import InputRegion

__all__ = ["Case", "Conjunction", "InputRegion", "OutputCondition", "Property",
           "misclassification", "not_in_top_k", "robustness"]
