"""`python -m bench [--quick] [--json PATH]`: see bench/README.md."""

import os
import sys
from pathlib import Path

# Before anything imports huggingface_hub / transformers / diffusers: the benchmarks never download anything, and
# progress bars or info logs would bury the results.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from bench.cli import main  # noqa: E402

sys.exit(main())
