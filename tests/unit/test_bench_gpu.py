"""bench.gpu --dry-run: the GPU benchmark's every code path, on the CPU at tiny size, in CI's environment."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from suite import REPO_ROOT


@pytest.mark.slow
def test_gpu_benchmark_dry_run_prints_every_row(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, "-m", "bench.gpu", "--dry-run", "--json", str(out)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    names = [r["benchmark"] for r in json.loads(out.read_text())["results"]]
    expected = ["lab eager b2", "engine end to end vs bare call", "UNet MFU, eager", "long-run recipe b4",
                "UNet MFU, long-run recipe", "SD-Turbo arch 1 st: engine end to end", "embed ViT-S-32 from JPEG files",
                "imported no UI or chart library"]
    for part in expected:
        assert any(part in name for name in names), (part, names)
    rows = {r["benchmark"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["generation and embedding imported no UI or chart library"]["ok"] is True
    assert "text encoder" in run.stdout and "VAE decoder" in run.stdout  # SD-Turbo: where the time goes


def test_without_a_gpu_it_says_so_at_once():
    run = subprocess.run([sys.executable, "-m", "bench.gpu"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "no CUDA device" in run.stderr and "--dry-run" in run.stderr
