"""Figures read back from every capability (remediation, metrics, the simulator's history); nothing imports reports."""
