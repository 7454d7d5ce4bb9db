"""The node agent: reads a GPU host's health and sends it to the gpufleet server, buffering while it cannot."""
