"""The tiny sweep every sweep and dataset test shares: the plan (2 classes x 8 seeds, tiny-random models) and
`./lab sweep` run as a subprocess on a 2-CPU local Ray cluster."""

from __future__ import annotations

import os
import subprocess
import sys

from suite import REPO_ROOT

PLAN = """
title = "tiny grid"
classes = ["tench", "church"]
templates = ["a photo of a {}"]
clip = ["tiny-random"]
batch = 2
seeds = { first = 0, count = 8 }

[[generators]]
preset = "tiny-random"
"""


def sweep(tmp_path, out, *, wait=True):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN)
    env = {**os.environ, "DDL_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "0"}
    cmd = [sys.executable, "-m", "core.pipeline.sweep", str(path), "--out", str(out), "--num-cpus", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: the kill reaches Ray's processes too
    if not wait:
        return proc
    out_text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out_text[-3000:]
    return out_text
