"""Fixtures of the CLI tests.

``slow_query``: ``(model, property)`` of :mod:`nnresilience.testing.slow` (a query no
test waits for). ``members``: the live processes of a session, to check that nothing
outlives a command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nnresilience.testing.slow import session_members, write_slow_query


@pytest.fixture(scope="session")
def slow_query(tmp_path_factory) -> tuple[Path, Path]:
    """``(model, property)`` of the slow query (module docstring)."""
    return write_slow_query(tmp_path_factory.mktemp("slow"))


@pytest.fixture
def members():
    """``session_members`` as a fixture (tests cannot import this conftest)."""
    return session_members
