"""Tokens that blew the limits, remembered with a clock the test steps."""

from __future__ import annotations

from services.authd.blown import BlownTokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_blown_token_and_its_user_are_remembered_for_the_ttl():
    clock = Clock()
    blown = BlownTokens(600, clock=clock)
    assert blown.refused_for("aa") is None and not blown.is_heavy("mallory")
    blown.remember("aa", "mallory")
    assert blown.refused_for("aa") == 600 and blown.is_heavy("mallory")
    assert blown.refused_for("bb") is None and not blown.is_heavy("alice")
    clock.now += 599
    assert blown.refused_for("aa") == 1 and blown.counts() == (1, 1)
    clock.now += 1
    assert blown.refused_for("aa") is None and not blown.is_heavy("mallory")
    assert blown.counts() == (0, 0)


def test_blowing_again_extends_and_memory_is_bounded():
    clock = Clock()
    blown = BlownTokens(10, capacity=3, clock=clock)
    blown.remember("aa", "mallory")
    clock.now += 5
    blown.remember("aa", "mallory")
    clock.now += 9
    assert blown.refused_for("aa") == 1
    for i in range(5):
        blown.remember(f"id{i}", f"user{i}")
    # The oldest are forgotten first; the newest stay.
    assert blown.refused_for("aa") is None and blown.refused_for("id4") == 10
    assert blown.counts() == (3, 3)


def test_a_ttl_of_zero_remembers_nothing():
    blown = BlownTokens(0, clock=Clock())
    blown.remember("aa", "mallory")
    assert blown.refused_for("aa") is None and not blown.is_heavy("mallory")
