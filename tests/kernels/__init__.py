"""Kernel tests. They run the compiled kernels on DEVICE when a GPU is there, else Triton's CPU interpreter."""

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
