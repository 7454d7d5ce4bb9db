"""Reconcile loops declared with their policy: how often they run and how they back off when a pass fails.

A controller is a class with ``reconcile()``, registered by the ``controller`` decorator with its interval and retry
policy, so ``gpufleet remediation run`` and anything else that runs controllers read one declaration. A pass that
raises is retried with backoff; a pass that finds its next work sooner than the interval runs again sooner.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar


@dataclass(frozen=True)
class Retry:
    initial: timedelta
    factor: float
    maximum: timedelta

    def delay(self, failures: int) -> float:
        seconds = self.initial.total_seconds() * self.factor ** max(0, failures - 1)
        return min(seconds, self.maximum.total_seconds())


@dataclass(frozen=True)
class ControllerSpec:
    name: str
    interval: timedelta
    retry: Retry
    doc: str


class Reconciler(Protocol):
    spec: ClassVar[ControllerSpec]

    def reconcile(self) -> datetime | None:
        """One pass; returns when there is next work (``None``: nothing scheduled)."""


CONTROLLERS: dict[str, ControllerSpec] = {}
T = TypeVar("T")


def controller(name: str, interval: timedelta, retry: Retry) -> Callable[[type[T]], type[T]]:
    def register(cls: type[T]) -> type[T]:
        spec = ControllerSpec(name, interval, retry, (cls.__doc__ or "").strip().splitlines()[0])
        cls.spec = spec  # type: ignore[attr-defined]  # declared as a ClassVar by each controller
        CONTROLLERS[name] = spec
        return cls

    return register


class Runner:
    """Runs one controller until stopped: at its interval, sooner when woken or when work falls due."""

    def __init__(
        self,
        target: Reconciler,
        now: Callable[[], datetime],
        log: Callable[[str], Any] | None = None,
        interval: timedelta | None = None,
    ) -> None:
        self.target = target
        self.now = now
        self.interval = interval or target.spec.interval
        """The spec's interval unless the operator asked for another (``gpufleet clusters watch --interval``)."""
        self.log = log or (lambda _m: None)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.passes = 0
        self.failures = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self, passes: int | None = None) -> None:
        spec = self.target.spec
        while not self._stop.is_set():
            self._wake.clear()
            try:
                due = self.target.reconcile()
                self.failures = 0
                wait = self.interval.total_seconds()
                if due is not None:
                    wait = max(0.0, min(wait, (due - self.now()).total_seconds()))
            except Exception as exc:  # a failed pass is retried; the loop itself never dies
                self.failures += 1
                wait = spec.retry.delay(self.failures)
                self.log(f"{spec.name}: pass failed ({type(exc).__name__}: {exc}); retry in {wait:.0f} s")
            self.passes += 1
            if passes is not None and self.passes >= passes:
                return
            if wait > 0:
                self._wake.wait(wait)
            else:
                time.sleep(0)


def run_together(
    runners: list[Runner], stop: threading.Event, passes: int | None = None, join_timeout: float = 30.0
) -> None:
    """Run each controller in a thread of its own until ``stop`` is set (or each made ``passes`` passes).

    One loop per thread keeps a slow pass of one (a Slurm call can take half a minute) from delaying the others'.
    """
    threads = [
        threading.Thread(target=r.run, args=(passes,), name=f"controller-{r.target.spec.name}", daemon=True)
        for r in runners
    ]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads) and not stop.wait(0.2):
        pass
    for runner in runners:
        runner.stop()
    for thread in threads:
        thread.join(join_timeout)
