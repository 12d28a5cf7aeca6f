"""Waiting for an event in a test: poll a predicate; the bound is for a broken run only, never a speed test."""
import time

BOUND_S = 120  # far above how long any awaited event takes on a busy 2-core machine


def wait_for(predicate, what: str, seconds: float = BOUND_S, poll_s: float = 0.02) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(poll_s)
