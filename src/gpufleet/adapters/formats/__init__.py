"""Parsers for the files and wire formats gpufleet reads."""
