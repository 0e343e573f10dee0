"""Honest kernel benchmarks, kept apart from the kernels they measure.

attention.py  FlashAttention vs every SDPA backend: shapes, providers, the correctness gate, timing
lm.py         the fused LM kernels (norms, RoPE, SwiGLU, linear + cross-entropy) against PyTorch
compile.py    every tile config the autotuner may launch, compiled for a GPU target without one
report.py     what `cgpt bench kernels` / `cgpt bench compile` print and write (tables, JSON, CSV, plot)
"""
