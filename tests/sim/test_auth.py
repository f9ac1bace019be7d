"""Users of an external auth driver: oned runs <driver>/authenticate with AUTHN on stdin."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pyone
import pytest


@pytest.fixture
def driver_sim(sim_factory, tmp_path):
    calls = tmp_path / "calls"
    driver = tmp_path / "drivers" / "fake" / "authenticate"
    driver.parent.mkdir(parents=True)
    driver.write_text(
        "#!/bin/sh\n"
        f'input=$(cat); printf "%s\\n" "$input" >> {calls}\n'
        'case "$input" in *"<SECRET>letmein</SECRET>"*) echo "fake carol key"; exit 0;; esac\n'
        'echo "token refused" >&2; exit 1\n'
    )
    driver.chmod(0o755)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "hosts: [{name: h}]\n"
        "users:\n"
        "  - {name: carol, password: 'ed25519/abcd', driver: fake}\n"
        "  - {name: dan, password: x, driver: missing}\n"
    )
    sim = sim_factory(
        "--fleet", str(fleet), "--auth-driver-dir", str(tmp_path / "drivers"),
        "--session-expiration", "1",
    )  # fmt: skip
    return sim, calls


def test_driver_accepts_and_rejects(driver_sim):
    sim, calls = driver_sim
    assert sim.one("carol:letmein").user.info(-1).NAME == "carol"
    authn = ET.fromstring(calls.read_text().splitlines()[0])
    assert (authn.findtext("USERNAME"), authn.findtext("PASSWORD"), authn.findtext("SECRET")) == (
        "carol",
        "ed25519/abcd",  # what oned stores for a non-core user: the password verbatim
        "letmein",
    )
    with pytest.raises(pyone.OneAuthenticationException):
        sim.one("carol:wrong").user.info(-1)
    with pytest.raises(pyone.OneAuthenticationException):
        sim.one("dan:x").user.info(-1)  # its driver script does not exist


def test_accepted_sessions_are_cached_until_they_expire(driver_sim):
    sim, calls = driver_sim
    one = sim.one("carol:letmein")
    for _ in range(3):
        one.vmpool.info(-2, -1, -1, -1)
    assert len(calls.read_text().splitlines()) == 1  # one driver run, then the cache
    time.sleep(1.2)  # --session-expiration 1
    one.vmpool.info(-2, -1, -1, -1)
    assert len(calls.read_text().splitlines()) == 2
    with pytest.raises(pyone.OneAuthenticationException):
        sim.one("carol:wrong").system.version()
    with pytest.raises(pyone.OneAuthenticationException):
        sim.one("carol:wrong").system.version()
    assert len(calls.read_text().splitlines()) == 4  # failures are never cached
