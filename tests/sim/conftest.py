"""Fixtures: the simulator as a real subprocess on free ports, reached through pyone and HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testkit.sim import Sim, start_sim


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Sim]]:
    """Start simulators with extra flags; all are stopped after the test."""
    started: list[Sim] = []

    def start(*args: str) -> Sim:
        sim = start_sim(*args)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.service.close()


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Sim]:
    """A 3-host / 3-VM-per-host simulator for tests that only read."""
    sim = start_sim("--hosts", "3", "--vms-per-host", "3", "--seed", "0")
    yield sim
    sim.service.close()
