"""Cluster drivers: how gpufleet acts on a cluster (simulated today; Slurm and Kubernetes behind the same interface)."""
