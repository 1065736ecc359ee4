"""Benchmark: the memory a process needs with full-size random-weight models loaded (CPU, float32).

Each model is built in its own fresh Python process (`python -m bench.memory_child`), so one model's memory never
hides in another's: SD 1.5's architecture (UNet, VAE, CLIP ViT-L/14 text encoder, the configs in
bench/pipelines.py) and the CLIP image models the lab offers (ViT-B-32, ViT-L-14), plus a process with the imports
only, for reference. Reported: the resident set after the imports, after the build, and its high-water mark
(which includes the build's temporary copies). Random weights occupy exactly what real ones do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .stats import Section, fmt_bytes, fmt_s

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_child(kind: str, tmp_root: Path, size: int = 256, timeout_s: float = 900) -> dict:
    work = Path(tempfile.mkdtemp(prefix="mem-", dir=tmp_root))
    proc = subprocess.run([sys.executable, "-m", "bench.memory_child", kind, str(work), str(size)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout_s, env=dict(os.environ))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the memory child for {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def bench_memory(kinds: list[str], tmp_root: Path, log) -> Section:
    results = []
    for kind in kinds:
        r = run_child(kind, tmp_root)
        results.append(r)
        log(f"[memory] {kind}: RSS after imports {fmt_bytes(r['after_imports']['rss'])}, after build "
            f"{fmt_bytes(r['after_build']['rss'])}, peak {fmt_bytes(r['after_build']['peak'])} "
            f"({r['params'] / 1e6:.0f} M parameters, built in {fmt_s(r['build_s'])})")
    labels = {
        "baseline": "imports only (torch, core)",
        "sd15-arch": "SD 1.5 arch: UNet + VAE + ViT-L/14 text encoder",
        "sd15-arch-generate": "SD 1.5 arch + 1 image of {size} px, 1 step",
        "clip:ViT-B-32": "CLIP ViT-B-32 (image + text towers)",
        "clip:ViT-L-14": "CLIP ViT-L-14 (image + text towers)",
    }
    lines = []
    for r in results:
        params = r["params"]
        lines.append([labels.get(r["kind"], r["kind"]).format(size=r["size"]),
                      f"{params / 1e6:.0f} M" if params else "-",
                      fmt_bytes(params * 4) if params else "-",
                      fmt_bytes(r["after_imports"]["rss"]), fmt_bytes(r["after_build"]["rss"]),
                      fmt_bytes(r["after_build"]["peak"]), fmt_s(r["build_s"])])
    return Section(
        title="Peak memory per model, each in a fresh process (CPU, float32, random weights)",
        headers=["process", "parameters", "weights (fp32)", "RSS after imports", "RSS loaded", "peak RSS",
                 "build time"],
        lines=lines,
        notes=["On CUDA the weights live in GPU memory in bf16/fp16, half the fp32 size; `python -m bench.gpu` "
               "reports peak GPU memory."],
        data={r["kind"]: r for r in results})
