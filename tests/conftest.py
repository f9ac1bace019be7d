"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from testkit import Service


@pytest.fixture
def start_service() -> Iterator[Callable[..., Service]]:
    """Start real service subprocesses; every one still running is stopped after the test."""
    started: list[Service] = []

    def start(argv: list[str], **kwargs: object) -> Service:
        service = Service(argv, **kwargs)  # type: ignore[arg-type]
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()
