"""Fixtures of the rapl_agent tests."""

from __future__ import annotations

import pytest

from tests.rapl_agent.live import Agent, agent_argv


@pytest.fixture
def start_agent(start_service):
    """Start an agent subprocess on given roots; stopped after the test."""

    def start(powercap_root, proc_root, **kwargs) -> Agent:
        argv, base = agent_argv(powercap_root, proc_root, **kwargs)
        return Agent(start_service(argv), base)

    return start
