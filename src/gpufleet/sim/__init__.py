"""The fleet simulator: a digital twin that runs the real services on simulated time, on a real database."""

from gpufleet.sim.engine import Simulation, SimulationError, simulate
from gpufleet.sim.live import LiveSimulation
from gpufleet.sim.report import write_html
from gpufleet.sim.scenario import Scenario, ScenarioError, load_scenario, shipped_scenarios

__all__ = [
    "LiveSimulation",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "SimulationError",
    "load_scenario",
    "shipped_scenarios",
    "simulate",
    "write_html",
]
