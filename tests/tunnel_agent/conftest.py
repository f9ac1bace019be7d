"""Labs of network namespaces with tunnel agents inside, removed whatever the outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.netns import Lab, leftovers


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab for one test; everything in it is removed after the test."""
    with Lab() as made:
        yield made


@pytest.fixture(scope="session", autouse=True)
def no_namespace_left_behind() -> Iterator[None]:
    """Every lab of the run cleans up after itself: no `oct-` namespace of ours remains."""
    before = set(leftovers())
    yield
    after = set(leftovers()) - before
    assert not after, f"namespaces left behind: {sorted(after)}"
