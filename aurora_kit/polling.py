"""The one polling helper every wait goes through (AWS statuses, PostgreSQL readiness, failover done...).

Unlike boto3's waiters (fixed 30 s delay) it starts polling fast and backs off, has a hard deadline, shows a
progress bar in notebooks and terminals, and raises :class:`WaitTimeoutError` naming what was awaited and the
last state seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from aurora_kit.errors import InvalidStateError, WaitTimeoutError

T = TypeVar("T")


def wait_for(
    what: str,
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float = 600.0,
    initial_delay: float = 0.05,
    max_delay: float = 5.0,
    backoff: float = 1.5,
    describe: Callable[[T], str] = repr,
    progress: bool = False,
    retry_on: tuple[type[BaseException], ...] = (),
    fail_if: Callable[[T], str | None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``probe`` until ``done(result)`` is true; return that result.

    ``retry_on`` lists exceptions from ``probe`` that mean "not yet" (e.g. connection refused while a server
    starts); any other exception escapes at once. ``fail_if(result)`` returns a reason when the state is terminal
    (``failed``, ``incompatible-parameters``...): the wait stops at once with :class:`InvalidStateError` instead of
    running to its deadline. The delay between probes starts at ``initial_delay`` and grows
    by ``backoff`` up to ``max_delay``, never sleeping past the deadline.
    """
    deadline = clock() + timeout
    delay = initial_delay
    last_state: object = "<not probed yet>"
    bar = _progress_bar(what, timeout) if progress else None
    started = clock()
    try:
        while True:
            try:
                result = probe()
            except retry_on as exc:
                last_state = f"{type(exc).__name__}: {exc}".strip()
            else:
                last_state = describe(result)
                if done(result):
                    return result
                reason = fail_if(result) if fail_if is not None else None
                if reason:
                    raise InvalidStateError(f"gave up waiting for {what}: {reason}", what=what, last_state=last_state)
            if bar is not None:
                bar.set_postfix_str(str(last_state)[:60], refresh=False)
                bar.n = round(min(clock() - started, timeout), 1)
                bar.refresh()
            remaining = deadline - clock()
            if remaining <= 0:
                raise WaitTimeoutError(what, timeout, last_state)
            sleep(min(delay, remaining))
            delay = min(delay * backoff, max_delay)
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(what: str, timeout: float):  # type: ignore[no-untyped-def]
    from tqdm.auto import tqdm

    return tqdm(total=round(timeout, 1), desc=f"waiting for {what}", unit="s", leave=False)
