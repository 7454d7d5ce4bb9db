"""What the simulated fleet's health checks report when a component fails: the codes real telemetry carries.

Each Llama 3 component maps to the Xid codes, nvidia-smi readings, DCGM results or alerts an operator would see for
it, with a weight for each alternative. The remediation controller only ever sees these codes, never the component
or the physical fault, exactly as in production. Drawn from the simulation's own random stream.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from gpufleet.sim.calibration import Component

Signal = tuple[tuple[str, ...], float]
"""The codes seen together for one fault, and the weight of that alternative."""

SIGNALS: Mapping[str, Sequence[Signal]] = {
    "Faulty GPU": ((("xid:79",), 0.4), (("xid:119",), 0.25), (("xid:46",), 0.2), (("xid:62",), 0.15)),
    "GPU HBM3 Memory": ((("xid:48", "xid:63"), 0.5), (("xid:48",), 0.25), (("xid:64",), 0.25)),
    "GPU SRAM Memory": ((("xid:95",), 0.6), (("xid:140",), 0.4)),
    "GPU System Processor": ((("xid:119",), 0.6), (("xid:120",), 0.4)),
    "Silent Data Corruption": ((("dcgm:DCGM_FR_SDC",), 1.0),),
    "GPU Thermal Interface + Sensor": ((("alert:ThermalSensor",), 1.0),),
    "Network Switch/Cable": ((("alert:NetworkLinkDown",), 1.0),),
    "NIC": ((("alert:NicError",), 1.0),),
    "SSD": ((("alert:StorageError",), 1.0),),
    "Software Bug": ((("xid:13",), 0.6), (("xid:31",), 0.4)),
    "NCCL Watchdog Timeouts": ((("alert:NCCLWatchdogTimeout",), 1.0),),
    "Host Maintenance": ((("alert:HostMaintenance",), 1.0),),
    "Dependency": ((("alert:DependencyFailure",), 1.0),),
}
NODE_DOWN = ("node:unreachable",)
"""Power supply, chassis, CPU, memory, IO board: the node stops answering."""


def signals(rng: random.Random, component: Component, node_down: bool) -> tuple[str, ...]:
    if node_down:
        return NODE_DOWN
    options = SIGNALS.get(component.name)
    if not options:
        return ("alert:HostMaintenance",) if component.kind == "software" else NODE_DOWN
    x = rng.random() * sum(w for _, w in options)
    for codes, weight in options:
        x -= weight
        if x <= 0:
            return codes
    return options[-1][0]
