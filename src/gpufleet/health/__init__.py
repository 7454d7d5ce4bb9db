"""Health telemetry: events from agents, Alertmanager, DCGM and kernel logs, matched to nodes and stored once."""
