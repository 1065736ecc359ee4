"""Benchmarks of the lab's own costs: `python -m bench [--quick] [--json PATH]` (see bench/README.md).

1. Generation overhead: `core.pipeline.generate.generate_missing` into a fresh cache vs the bare diffusers call, same
   pipeline object, seeds, steps, size and batches (tiny-random, and SD 1.5's architecture with random weights).
2. Batch scaling: images/s of the same images at batch 1, 2, 4, 8.
3. Embedding: the lab's path (decode, preprocess, encode, normalise, store) vs open_clip's bare encoder.
4. Cache reopen: reopening a cached 64-image run (`cached_images`) vs generating it, in-process and in a fresh
   Python process; the Diversity page rendering that run from the cache.
5. Statistics at scale: n = 100, 1,000, 10,000 embeddings: time, peak memory, growth exponent.
6. Memory: resident set with each full-size model loaded, each in a fresh process.

`python -m bench.gpu` is the GPU check (CUDA only; `--dry-run` on a CPU).

Kept import-light on purpose: `python -m bench.reopen_child` imports this package in a fresh process whose start-up
time is measured.
"""
