"""The one way tests wait: poll a condition until it holds, with a deadline.

Never a sleep as synchronisation: the short sleep between polls only paces the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError, TimeoutError):
    """The condition did not hold in time: a test failure (and a ``TimeoutError``)."""


def wait_for(
    condition: Callable[[], T], timeout: float = 10.0, what: str = "", interval: float = 0.01
) -> T:
    """Poll ``condition`` until it returns something truthy and return that value.

    Raises :class:`WaitTimeout` naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)  # polling a condition with a deadline, not synchronising by time
