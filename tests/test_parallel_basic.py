"""The executor interface: inline and process pool give the same answers."""

import math

from nnresilience.parallel import InlineExecutor, ProcessExecutor, make_executor


def test_inline_and_processes_agree():
    items = [0.1 * i for i in range(8)]
    with InlineExecutor() as ex:
        inline = dict(ex.map(math.sin, items))
    with ProcessExecutor(2) as ex:
        pooled = dict(ex.map(math.sin, items))
    assert inline == pooled
    assert sorted(inline) == list(range(8))


def test_make_executor_specs():
    assert isinstance(make_executor(None), InlineExecutor)
    ex = make_executor(2)
    try:
        assert ex.workers == 2
    finally:
        ex.shutdown()
