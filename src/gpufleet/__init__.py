"""gpufleet: the control plane for the hardware lifecycle of a GPU cloud's fleet."""

__version__ = "0.1.0"
