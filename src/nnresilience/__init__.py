"""nnresilience: verify trained neural networks and measure their maximum resilience.

Two complete engines (big-M MILP after Cheng, Nührenberg & Ruess 2017; Leaky-Reluplex
after Xu et al. 2020), sound bounds, a falsifier whose counterexamples are always replayed
through the float64 forward pass, and the maximum perturbation bound Phi_m / Xi.
"""

from nnresilience.errors import NNResError
from nnresilience.network import Network
from nnresilience.results import ResilienceResult, Status, VerificationResult

__version__ = "0.1.0"

__all__ = ["NNResError", "Network", "ResilienceResult", "Status", "VerificationResult",
           "__version__"]
