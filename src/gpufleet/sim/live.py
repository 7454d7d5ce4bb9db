"""A scenario running live beside the API: the demo's living fleet.

Simulated time is paced against the wall clock at ``speed`` simulated seconds per second, and everything is recorded
in the API's time (see ``ScaledClock``), so the console shows nodes failing, draining, going to the supplier and
coming back while people watch. It runs in a background thread with its own database connection, commits after
every tick so it never holds the write lock while it waits, and on a database error picks every node up again from
what is stored instead of stopping the demo.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gpufleet.sim.engine import Simulation
from gpufleet.sim.failures import DAY
from gpufleet.sim.scenario import Scenario

LIVE_DAYS = 3650.0
"""How far a live run's schedule reaches: for a demo, forever."""


class LiveSimulation:
    def __init__(
        self,
        scenario: Scenario,
        database_url: str,
        speed: float = 3600.0,
        seed: int | None = None,
        tick_seconds: float = 0.5,
        log: Callable[[str], None] | None = None,
        start_when: Callable[[], bool] | None = None,
    ) -> None:
        self.scenario = scenario
        self.database_url = database_url
        self.speed = speed
        self.seed = seed
        self.tick_seconds = tick_seconds
        self.log = log or (lambda _message: None)
        self.start_when = start_when
        """Polled before touching the database (e.g. "the API is listening"); stopping first leaves it untouched."""
        self.errors = 0
        self.simulated_days = 0.0
        self.ready = threading.Event()
        self.sim: Simulation | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpufleet-live-simulation", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while self.start_when is not None and not self.start_when():
            if self._stop.wait(0.2):
                self.ready.set()
                return
        origin = datetime.now(UTC)
        scenario = self.scenario.model_copy(update={"start": origin, "duration_days": LIVE_DAYS})
        sim = Simulation(scenario, seed=self.seed, database_url=self.database_url, live=True, speed=self.speed)
        self.sim = sim
        try:
            sim.prepare()
            self.log(f"live simulation of '{scenario.name}': {len(sim.nodes)} nodes, {self.speed:g}x real time")
            self.ready.set()
            started = time.monotonic()
            while not self._stop.is_set():
                target = min((time.monotonic() - started) * self.speed, sim.duration)
                try:
                    sim.advance_to(target)
                except Exception as exc:  # keep the demo alive: start again from what the database holds
                    self.errors += 1
                    self.log(f"live simulation: {type(exc).__name__}: {exc}; picking the fleet up again")
                    sim.resync()
                self.simulated_days = sim.t / DAY
                self._stop.wait(self.tick_seconds)
        except Exception as exc:
            self.errors += 1
            self.log(f"live simulation stopped: {type(exc).__name__}: {exc}")
        finally:
            self.ready.set()
            sim.close()
