"""core.pipeline.config: device, dtype, threads, batch sizes and pipeline tuning, decided in one place."""

from __future__ import annotations

from unittest import mock

import pytest

from core.pipeline import config
from core.pipeline.config import DeviceSpec

CPU = DeviceSpec("cpu", "float32")
CUDA = DeviceSpec("cuda", "bfloat16")
GiB = 1024**3


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("DDL_DEVICE", "DDL_DTYPE", "DDL_CPU_THREADS", "DDL_COMPILE"):
        monkeypatch.delenv(name, raising=False)


def fake_cuda(capability: tuple[int, int]):
    """torch seeing one CUDA GPU of the given compute capability."""
    return mock.patch.multiple("torch.cuda", is_available=lambda: True,
                               get_device_capability=lambda *a: capability)


def test_cpu_is_float32_and_refuses_float16(monkeypatch):
    monkeypatch.setenv("DDL_DEVICE", "cpu")
    assert config.select_device() == CPU
    monkeypatch.setenv("DDL_DTYPE", "float16")
    with pytest.raises(ValueError, match="float16 is not supported on the CPU"):
        config.select_device()


@pytest.mark.parametrize("capability, dtype", [((9, 0), "bfloat16"), ((8, 0), "bfloat16"), ((7, 5), "float16"),
                                               ((7, 0), "float16")])
def test_cuda_gets_bf16_where_the_gpu_runs_it_natively(capability, dtype, monkeypatch):
    with fake_cuda(capability):
        assert config.select_device() == DeviceSpec("cuda", dtype)
        monkeypatch.setenv("DDL_DTYPE", "float16")  # an explicit choice wins
        assert config.select_device() == DeviceSpec("cuda", "float16")


def test_bad_device_and_dtype_names_are_explained(monkeypatch):
    monkeypatch.setenv("DDL_DEVICE", "tpu")
    with pytest.raises(ValueError, match="DDL_DEVICE='tpu' is not one of"):
        config.select_device()
    monkeypatch.setenv("DDL_DEVICE", "cpu")
    monkeypatch.setenv("DDL_DTYPE", "float8")
    with pytest.raises(ValueError, match="DDL_DTYPE='float8' is not one of"):
        config.select_device()


def test_cpu_threads_default_depends_on_usable_cores(monkeypatch):
    with mock.patch.object(config, "usable_cores", return_value=2):
        assert config.cpu_threads() == 1
    with mock.patch.object(config, "usable_cores", return_value=16):
        assert config.cpu_threads() is None  # the libraries' own defaults
    monkeypatch.setenv("DDL_CPU_THREADS", "3")
    with mock.patch.object(config, "usable_cores", return_value=2):
        assert config.cpu_threads() == 3


@pytest.mark.parametrize("raw", ["0", "-2", "many"])
def test_bad_thread_counts_are_explained(raw, monkeypatch):
    monkeypatch.setenv("DDL_CPU_THREADS", raw)
    with pytest.raises(ValueError, match="DDL_CPU_THREADS"):
        config.cpu_threads()


def test_apply_cpu_threads_sets_torch_and_blas(monkeypatch):
    import numpy  # noqa: F401  (loads its BLAS)
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=2):  # restores the pools' limits on the way out
        try:
            monkeypatch.setenv("DDL_CPU_THREADS", "1")
            assert config.apply_cpu_threads() == 1 == torch.get_num_threads()
            blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
            assert blas and set(blas) == {1}
            monkeypatch.setenv("DDL_DEVICE", "cpu")
            torch.set_num_threads(2)
            config.select_device()  # selecting the device applies the thread count too
            assert torch.get_num_threads() == 1
        finally:
            torch.set_num_threads(before)


def test_cpu_batch_size_is_capped_by_pixels():
    assert config.auto_batch_size(CPU, 512, 512) == config.NON_CUDA_BATCH_SIZE
    assert config.auto_batch_size(CPU, 64, 64) == config.NON_CUDA_BATCH_SIZE
    assert config.auto_batch_size(CPU, 1024, 1024) == 2  # the pixel cap: 8 images of 512 px
    assert config.auto_batch_size(CPU, 4096, 4096) == 1  # never zero


@pytest.mark.parametrize("free_gib, size, compiled, expected", [
    (70, 512, False, 16),  # a big GPU: the eager cap, where throughput stopped growing on the H200
    (70, 512, True, 32),  # compiled: the compiled cap
    (70, 1024, False, 4),  # the cap scales with pixels
    (4, 512, False, 5),  # (4 - 1) GiB / (2 GiB per megapixel x 0.262 megapixels) = 5.6
    (1.2, 512, False, 1),  # almost full: one image, never zero
])
def test_cuda_batch_size_follows_free_memory(free_gib, size, compiled, expected):
    with mock.patch("torch.cuda.mem_get_info", return_value=(int(free_gib * GiB), 80 * GiB)):
        assert config.auto_batch_size(CUDA, size, size, compiled=compiled) == expected


def recipe(free_gib: float, images: int, size: int = 512) -> config.GenerationRecipe:
    with mock.patch("torch.cuda.mem_get_info", return_value=(int(free_gib * GiB), 141 * GiB)):
        return config.generation_recipe(CUDA, size, size, images)


def test_cuda_recipe_compiles_only_runs_long_enough_to_pay_for_it(monkeypatch):
    page_run, sweep = recipe(130, 16), recipe(130, config.COMPILE_MIN_IMAGES)
    assert (page_run.compile_mode, page_run.channels_last, page_run.batch_size) == (None, False, 16)
    assert (sweep.compile_mode, sweep.channels_last, sweep.batch_size) == ("default", True, 32)
    # Per pixel: 250 images of 1024 px are as much work as 1000 of 512 px.
    assert recipe(130, config.COMPILE_MIN_IMAGES // 4, 1024).compile_mode == "default"
    assert recipe(130, config.COMPILE_MIN_IMAGES // 4 - 1, 1024).compile_mode is None
    monkeypatch.setenv("DDL_COMPILE", "1")
    assert recipe(130, 1).compile_mode == "default"
    monkeypatch.setenv("DDL_COMPILE", "0")
    assert recipe(130, 10**6).compile_mode is None
    monkeypatch.setenv("DDL_COMPILE", "max-autotune")
    assert "torch.compile" in recipe(130, 1).describe() and recipe(130, 1).compile_mode == "max-autotune"
    monkeypatch.setenv("DDL_COMPILE", "fastest")
    with pytest.raises(ValueError, match="DDL_COMPILE='fastest'"):
        recipe(130, 1)


def test_cuda_recipe_slices_the_vae_only_when_memory_needs_it():
    assert not recipe(130, 16).vae_slicing  # an H200: 16 images decode at once with room to spare
    small = recipe(8, 16)  # an 8 GiB card: the UNet batch fits, decoding it at once would not
    assert small.batch_size == 13 and small.vae_slicing


def test_cpu_recipe_is_fixed():
    cpu = config.generation_recipe(CPU, 512, 512, 10**6)
    assert (cpu.batch_size, cpu.vae_slicing, cpu.channels_last, cpu.compile_mode) == (4, True, False, None)


def test_embedding_batches_and_decode_workers():
    assert config.embed_batch_size("cpu") == 32 and config.embed_batch_size("cuda") == 128
    assert config.decode_workers("cpu") == 0  # decode in the encoding thread
    with mock.patch.object(config, "usable_cores", return_value=16):
        assert config.decode_workers("cuda") == 8
    with mock.patch.object(config, "usable_cores", return_value=1):
        assert config.decode_workers("cuda") == 1
