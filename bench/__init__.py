"""Benchmarks of the lab's own costs: `python -m bench [--quick] [--json PATH]` (see bench/README.md).

1. Generation overhead: `core.generate.generate_missing` into a fresh cache vs the bare diffusers call, same
   pipeline object, seeds, steps, size and batches (tiny-random, and SD 1.5's architecture with random weights).
2. Cache reopen: reopening a cached 64-image run (`cached_images`) vs generating it, in-process and in a fresh
   Python process.

Kept import-light on purpose: `python -m bench.reopen_child` imports this package in a fresh process whose start-up
time is measured.
"""
