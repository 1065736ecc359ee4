"""One model in a fresh process, for its memory: `python -m bench.memory_child KIND WORK_DIR [SIZE]`.

KIND: `baseline` (the imports only), `sd15-arch` (SD 1.5's architecture, random weights, float32 on the CPU),
`sd15-arch-generate` (the same, then one image of SIZE px in 1 step: the decoder's activations), `clip:ARCH` (an
open_clip architecture with random weights, float32). Prints one JSON line: resident set after the imports, after
the build, and the high-water mark (Linux /proc/self/status; ru_maxrss elsewhere), the parameter count, the
seconds taken.
"""

import sys

from bench import offline_and_quiet

offline_and_quiet()  # before anything imports huggingface_hub / transformers / diffusers

import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402


def rss() -> dict:
    try:
        text = Path("/proc/self/status").read_text()
        found = {k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}
        return {"rss": found["VmRSS"], "peak": found["VmHWM"]}
    except (OSError, AttributeError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KB on Linux
        return {"rss": None, "peak": peak}


def main() -> None:
    kind, work_dir = sys.argv[1], Path(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 256
    warnings.filterwarnings("ignore")
    repo = str(Path(__file__).resolve().parent.parent)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    t0 = time.perf_counter()
    import torch

    from core.pipeline.config import DeviceSpec, apply_cpu_threads

    apply_cpu_threads()
    device = DeviceSpec("cpu", "float32")
    if kind.startswith("sd15"):
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    elif kind.startswith("clip:"):
        import open_clip  # noqa: F401
    after_imports = rss()
    t1 = time.perf_counter()
    params = 0
    if kind.startswith("sd15"):
        from bench.pipelines import build_sd15_random
        _, pipe = build_sd15_random(device, work_dir)  # with the lab's recipe for the device (VAE slicing on CPU)
        params = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())
        if kind == "sd15-arch-generate":
            pipe(prompt=["a photo of a dog"], num_inference_steps=1, guidance_scale=7.5, height=size, width=size,
                 generator=[torch.Generator("cpu").manual_seed(0)], output_type="pil")
    elif kind.startswith("clip:"):
        import open_clip

        torch.manual_seed(0)
        model, _, _ = open_clip.create_model_and_transforms(kind.split(":", 1)[1], pretrained=None)
        model.eval()
        params = sum(p.numel() for p in model.parameters())
    elif kind != "baseline":
        raise SystemExit(f"unknown kind {kind!r}")
    built = rss()
    print(json.dumps({"kind": kind, "after_imports": after_imports, "after_build": built, "params": params,
                      "import_s": t1 - t0, "build_s": time.perf_counter() - t1, "size": size}), flush=True)


if __name__ == "__main__":
    main()
