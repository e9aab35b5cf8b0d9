"""Planted instances through ``verify``: never a wrong word (issue 11, "Must show").

Each configuration (both engines, every bound method with no engine, the falsifier on and
off, with and without input splitting) runs on a rotating quarter of the CI seeds. Wrong
is: ``holds`` on a planted violation; ``violated`` on a planted hold; a ``violated``
whose witness is outside the box or does not satisfy the condition in the float64
replay. ``unknown`` is always allowed; how often each configuration proves the planted
holds or finds the planted needles is measured by ``benchmarks/adversarial.py``, not
asserted here.
"""

from __future__ import annotations

import pytest

from nnresilience.engines.reluplex import ReluplexEngine
from nnresilience.errors import EngineUnsupportedError
from nnresilience.testing.adversarial import configs, run

from .conftest import seeds_for

CONFIGS = configs(falsify_on=0.1) + configs(falsify_on=0.1, split=True)[:2]
TIMEOUT = 2.0


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=[c.name for c in CONFIGS])
def test_no_wrong_answer(index, planted):
    config = CONFIGS[index]
    wrong, asked = [], 0
    for seed in seeds_for(index):
        inst = planted(seed)
        if not config.applies(inst):
            continue
        out = run(inst, config, timeout=TIMEOUT)
        asked += 1
        if out.wrong:
            wrong.append(f"{inst.describe()}: {out.wrong} ({out.decided_by}; {out.message})")
    assert asked >= 10
    assert not wrong, f"{config.name}: {len(wrong)} wrong of {asked}:\n" + "\n".join(wrong)


def test_reluplex_refuses_planted_maxpool(planted):
    """Max-pool is outside the reluplex engine: an error, never a silent answer."""
    inst = next(planted(s) for s in range(40) if planted(s).kind == "maxpool")
    with pytest.raises(EngineUnsupportedError, match="maxpool"):
        ReluplexEngine().check(inst.network, inst.case, None, timeout=5)

