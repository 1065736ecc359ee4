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

import os
import sys
from pathlib import Path

QUIET_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                 "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error"}


def offline_and_quiet() -> None:
    """Call before anything imports huggingface_hub / transformers / diffusers: the benchmarks never download
    anything, and progress bars or info logs would bury the results (a variable already set is kept). Also puts
    the repository root on sys.path, for `core`."""
    for name, value in QUIET_OFFLINE.items():
        os.environ.setdefault(name, value)
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
