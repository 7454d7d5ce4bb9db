"""The source of truth for nodes: the lifecycle, inventory imports, reference data, allocations and tokens."""
