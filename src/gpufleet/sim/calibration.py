"""Published interruption counts turned into failure rates per in-service hour.

The rates are derived here from the shipped data file, never typed in: change the file and the model follows. A
component in the GPU category fails per GPU (a 4-GPU tray sees half the GPU faults of an 8-GPU node); everything
else fails per node. The exposure is the study's: every GPU of the study in service for its whole window, which is
how a training job of fixed size that swaps in spares runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
CALIBRATIONS = {"llama3": DATA_DIR / "llama3-interruptions.json"}


@dataclass(frozen=True)
class Component:
    name: str
    category: str
    kind: str
    """``hardware`` or ``software``: who fixes it and how long that takes."""
    per_gpu: bool
    rate_per_hour: float
    """Failures per in-service hour of one GPU (``per_gpu``) or of one node."""
    count: int
    """The count in the source, kept so reports can set the simulation beside the paper."""


@dataclass(frozen=True)
class Calibration:
    name: str
    source: str
    window_days: float
    gpus: int
    gpus_per_node: int
    components: tuple[Component, ...]

    @property
    def nodes(self) -> int:
        return self.gpus // self.gpus_per_node

    @property
    def total(self) -> int:
        return sum(c.count for c in self.components)

    @property
    def hardware_share(self) -> float:
        return sum(c.count for c in self.components if c.kind == "hardware") / self.total

    def share_by_category(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.components:
            out[c.category] = out.get(c.category, 0.0) + c.count / self.total
        return out


@cache
def load_calibration(name: str = "llama3") -> Calibration:
    path = CALIBRATIONS[name]
    data = json.loads(path.read_text(encoding="utf-8"))
    hours = float(data["window_days"]) * 24.0
    gpus = int(data["gpus"])
    gpus_per_node = int(data["gpus_per_node"])
    nodes = gpus / gpus_per_node
    components = []
    for item in data["unexpected_by_component"]:
        per_gpu = item["category"] == "GPU"
        exposure = (gpus if per_gpu else nodes) * hours
        components.append(
            Component(
                name=item["component"],
                category=item["category"],
                kind=item["kind"],
                per_gpu=per_gpu,
                rate_per_hour=int(item["count"]) / exposure,
                count=int(item["count"]),
            )
        )
    return Calibration(name, data["source"], float(data["window_days"]), gpus, gpus_per_node, tuple(components))
