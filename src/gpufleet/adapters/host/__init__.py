"""What the node agent reads on a GPU host: nvidia-smi, dcgmi and the kernel log."""
