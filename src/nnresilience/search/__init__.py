"""One branch-and-bound search over domains (input box + pre-activation clamps).

See ``docs/search.md``. Modules: :mod:`.bounder` (batched sound bounds per domain),
:mod:`.domains` (domain batches and the frontier), :mod:`.rules` (branching rules),
:mod:`.driver` (the generic loop), :mod:`.decide` (deciding one case with it),
:mod:`.parallel` (the frontier shared by executor workers).
"""
