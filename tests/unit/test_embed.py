"""core.pipeline.embed: batched, cached, parallel-decoded image embeddings."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

import core.pipeline.embed
from core.pipeline.cache import Cache
from core.pipeline.embed import embed_pil, embeddings_for, l2_normalise


def solid(i: int) -> Image.Image:
    """A distinct image per i (colour and a stripe), so every embedding differs."""
    im = Image.new("RGB", (48, 40), ((37 * i) % 256, (91 * i) % 256, (53 * i + 17) % 256))
    im.paste((255 - (37 * i) % 256, 0, 0), (0, i % 40, 48, i % 40 + 5))
    return im


class Loads:
    """Loaders that count how often (and on which threads) each image was decoded."""

    def __init__(self, n: int, offset: int = 0):
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()
        self.items = [(f"sha-{offset + i:04d}", self.loader(offset + i)) for i in range(n)]

    def loader(self, i: int):
        def load() -> Image.Image:
            with self.lock:
                self.calls.append(i)
                self.threads.add(threading.current_thread().name)
            return solid(i)
        return load


@pytest.fixture
def encoded(monkeypatch):
    """The batch sizes passed to the CLIP encoder (a spy around core.pipeline.embed.encode_preprocessed)."""
    sizes: list[int] = []
    real = core.pipeline.embed.encode_preprocessed

    def spy(clip, batch):
        sizes.append(len(batch))
        return real(clip, batch)

    monkeypatch.setattr(core.pipeline.embed, "encode_preprocessed", spy)
    return sizes


def test_embeds_in_batches_and_matches_one_image_at_a_time(tmp_path, tiny_clip, encoded):
    loads = Loads(10)
    vectors = embeddings_for(Cache(tmp_path), tiny_clip.key, loads.items, lambda: tiny_clip, batch_size=4,
                             workers=3)
    assert encoded == [4, 4, 2]
    assert sorted(loads.calls) == list(range(10))  # each image decoded once
    one_by_one = np.concatenate([embed_pil(tiny_clip, [solid(i)]) for i in range(10)])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)  # same vectors, same order as the items
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_decoding_runs_in_worker_threads_or_in_the_callers(tmp_path, tiny_clip):
    threaded, inline = Loads(6), Loads(6)
    a = embeddings_for(Cache(tmp_path / "a"), tiny_clip.key, threaded.items, lambda: tiny_clip, batch_size=2,
                       workers=2)
    b = embeddings_for(Cache(tmp_path / "b"), tiny_clip.key, inline.items, lambda: tiny_clip, batch_size=2,
                       workers=0)
    assert threaded.threads and all(name.startswith("clip-decode") for name in threaded.threads)
    assert inline.threads == {threading.current_thread().name}
    np.testing.assert_array_equal(a, b)


def test_a_cached_image_is_never_embedded_again(tmp_path, tiny_clip, encoded):
    cache = Cache(tmp_path)
    first = Loads(5)
    before = embeddings_for(cache, tiny_clip.key, first.items, lambda: tiny_clip, batch_size=4)
    encoded.clear()

    again = Loads(5)
    asked = []
    after = embeddings_for(cache, tiny_clip.key, again.items, lambda: asked.append(1) or tiny_clip, batch_size=4)
    assert again.calls == [] and encoded == [] and asked == []  # nothing decoded, encoded, or even loaded
    np.testing.assert_array_equal(after, before)

    new = Loads(3, offset=5)  # the set grows: 5 cached images + 3 new ones
    vectors = embeddings_for(cache, tiny_clip.key, again.items + new.items, lambda: tiny_clip, batch_size=4)
    assert again.calls == [] and sorted(new.calls) == [5, 6, 7] and encoded == [3]
    np.testing.assert_array_equal(vectors[:5], before)


def test_the_same_image_twice_is_embedded_once(tmp_path, tiny_clip, encoded):
    loads = Loads(3)
    items = loads.items + [loads.items[1]]
    vectors = embeddings_for(Cache(tmp_path), tiny_clip.key, items, lambda: tiny_clip, batch_size=8)
    assert sorted(loads.calls) == [0, 1, 2] and encoded == [3]
    np.testing.assert_array_equal(vectors[3], vectors[1])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_broken_image_fails_after_the_batches_before_it_are_stored(tmp_path, tiny_clip, workers):
    cache = Cache(tmp_path)
    loads = Loads(6)

    def broken():
        raise OSError("truncated file")

    items = loads.items[:4] + [("sha-broken", broken)] + loads.items[4:]
    with pytest.raises(OSError, match="truncated"):
        embeddings_for(cache, tiny_clip.key, items, lambda: tiny_clip, batch_size=2, workers=workers)
    stored = cache.get_embeddings(tiny_clip.key, [sha for sha, _ in items])
    assert set(stored) == {"sha-0000", "sha-0001", "sha-0002", "sha-0003"}  # the two batches before the bad one


def test_empty_input(tmp_path, tiny_clip):
    assert embeddings_for(Cache(tmp_path), tiny_clip.key, [], lambda: tiny_clip).shape == (0, 0)
    assert embed_pil(tiny_clip, []).shape == (0, 0)


def test_l2_normalise_refuses_zero_rows():
    np.testing.assert_allclose(l2_normalise(np.array([[3.0, 4.0]])), [[0.6, 0.8]])
    with pytest.raises(ValueError, match="zero or not finite"):
        l2_normalise(np.array([[0.0, 0.0], [1.0, 0.0]]))


# -- decoding in worker processes: the same pixels as clip.preprocess ------------------------------------------------
@pytest.fixture(scope="module")
def odd_photos(tmp_path_factory):
    """Files in the shapes and modes real folders hold: portrait, landscape, tiny, exact size, grey, palette, RGBA."""
    from core.pipeline.tiny import tiny_photo

    root = tmp_path_factory.mktemp("odd-photos")
    shapes = [((333, 500), "RGB", "jpg"), ((500, 333), "RGB", "png"), ((100, 60), "L", "jpg"),
              ((224, 224), "RGB", "png"), ((225, 224), "P", "png"), ((640, 481), "RGBA", "png"),
              ((48, 1000), "RGB", "jpg"), ((301, 299), "L", "png")]
    files = []
    for i, (size, mode, ext) in enumerate(shapes):
        path = root / f"photo-{i}.{ext}"
        tiny_photo(i, i / len(shapes), size, mode).save(path)
        files.append(path)
    return files


def test_worker_pixels_equal_clip_preprocess_bit_for_bit(tiny_clip, odd_photos):
    import torch

    from core.pipeline.embed import clip_pixels, normalised, pixel_recipe
    from core.pipeline.natural import open_rgb

    recipe = pixel_recipe(tiny_clip.preprocess)
    assert recipe is not None and recipe.resize == 224 and recipe.crop == (224, 224)
    for path in odd_photos:
        expected = tiny_clip.preprocess(open_rgb(path))
        got = normalised(clip_pixels(str(path), recipe)[None], recipe, "cpu")[0]
        assert got.shape == expected.shape and torch.equal(got, expected), path.name


def test_unusual_preprocessing_falls_back_to_threads(tiny_clip):
    from torchvision import transforms as T

    from core.pipeline.embed import pixel_recipe

    steps = list(tiny_clip.preprocess.transforms)
    assert pixel_recipe(T.Compose([T.Resize((224, 224)), *steps[1:]])) is None  # a fixed (h, w) resize
    assert pixel_recipe(T.Compose(steps[:4])) is None  # no normalisation
    assert pixel_recipe(lambda im: im) is None


@pytest.mark.slow
def test_embedding_in_worker_processes_equals_the_thread_path(tmp_path, tiny_clip, odd_photos, monkeypatch):
    """Two spawned decoders (as on a GPU box with many photos) give the vectors the in-process path gives."""
    from core.pipeline.natural import open_rgb

    items = [(f"sha-{i}", (lambda p=p: open_rgb(p))) for i, p in enumerate(odd_photos)]
    threads = embeddings_for(Cache(tmp_path / "threads"), tiny_clip.key, items, lambda: tiny_clip, batch_size=3)
    used = []
    monkeypatch.setattr(core.pipeline.embed, "_preprocessed_batches", lambda *a: used.append(a) or iter(()))
    procs = embeddings_for(Cache(tmp_path / "procs"), tiny_clip.key, items, lambda: tiny_clip, batch_size=3,
                           files=odd_photos, processes=2)
    assert not used  # the thread path was not taken
    np.testing.assert_allclose(procs, threads, atol=1e-6)
    assert core.pipeline.embed.decode_pool(2) is core.pipeline.embed.decode_pool(2)  # started once, kept warm


def test_decoders_never_run_the_parents_main_script(tmp_path, monkeypatch):
    """Under a Streamlit script run, __main__ is the page script: a spawned decoder must not run it again (it failed
    with "NameError: __args" after an AppTest, and would draw a page on a server)."""
    import os
    import sys
    import types

    marker = tmp_path / "ran"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('the page ran in a decoder')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    monkeypatch.setattr(core.pipeline.embed, "_POOL", {})  # a fresh pool, started under this __main__
    pool = core.pipeline.embed.decode_pool(2)
    try:
        pids = {f.result() for f in [pool.submit(os.getpid) for _ in range(4)]}
        assert 1 <= len(pids) <= 2 and os.getpid() not in pids
        assert not marker.exists()
        assert sys.modules["__main__"] is page  # put back
    finally:
        pool.shutdown()


def test_an_unreadable_file_in_a_worker_process_is_explained(tmp_path, tiny_clip, monkeypatch):
    from core.pipeline.embed import clip_pixels, pixel_recipe
    from core.pipeline.natural import UnreadableImageError

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(UnreadableImageError, match="broken.jpg is not a readable image"):
        clip_pixels(str(bad), pixel_recipe(tiny_clip.preprocess))


# -- precision: bf16 autocast on GPUs, in the key ---------------------------------------------------------------
def test_precision_is_part_of_the_clip_key_and_other_precisions_are_found(tmp_path, monkeypatch):
    from core.pipeline.models import clip_key
    from core.pipeline.registry import CLIP_MODELS, TINY_RANDOM

    preset = CLIP_MODELS[TINY_RANDOM]
    base = clip_key(preset, "float32")
    monkeypatch.setenv("DDL_CLIP_PRECISION", "bfloat16")
    bf16 = clip_key(preset)
    assert bf16 == base + ":bfloat16-autocast" and clip_key(preset, "float32") == base
    monkeypatch.setenv("DDL_CLIP_PRECISION", "half")
    with pytest.raises(ValueError, match="DDL_CLIP_PRECISION='half'"):
        clip_key(preset)
    cache = Cache(tmp_path)
    a, b = l2_normalise(np.array([[1.0, 0.0]])), l2_normalise(np.array([[0.0, 1.0]]))
    cache.put_embeddings(bf16, {"made-on-a-gpu": a[0], "both": a[0]})
    cache.put_embeddings(base, {"both": b[0]})
    found = cache.get_embeddings(base, ["made-on-a-gpu", "both", "nowhere"])
    assert set(found) == {"made-on-a-gpu", "both"}  # another precision of the same model stands in for a miss...
    np.testing.assert_array_equal(found["both"], b[0])  # ...but the exact key wins
    assert cache.get_embeddings("another-model", ["both"]) == {}


@pytest.mark.slow
# ViT-L-14 (the GPU default) on the GPU only: bf16 is emulated on a CPU, where it took 171 s of the suite's budget;
# ViT-B-32 takes the same autocast path everywhere.
@pytest.mark.parametrize("arch", ["ViT-B-32", pytest.param("ViT-L-14", marks=pytest.mark.gpu)])
def test_bf16_autocast_embeddings_agree_with_float32(arch, odd_photos):
    """The full-size architectures (random weights) under bf16 autocast vs float32: per-vector cosine >= 0.999.
    Autocast on the CPU stands in for CUDA's where there is no GPU: both run the matmuls in bf16 with float32
    accumulation."""
    import open_clip
    import torch

    from core.pipeline.embed import encode_preprocessed
    from core.pipeline.models import ClipModel
    from core.pipeline.natural import open_rgb
    from core.pipeline.registry import CLIP_MODELS, DEFAULT_CLIP

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    model = model.to(device)
    batch = torch.stack([preprocess(open_rgb(p)) for p in odd_photos[:2]])  # bf16 on a CPU is emulated: slow
    fp32 = ClipModel(CLIP_MODELS[DEFAULT_CLIP], "k", model.eval(), preprocess, None, device)
    bf16 = ClipModel(CLIP_MODELS[DEFAULT_CLIP], "k", model.eval(), preprocess, None, device, "bfloat16")
    cos = (encode_preprocessed(fp32, batch) * encode_preprocessed(bf16, batch)).sum(axis=1)
    assert cos.min() >= 0.999, cos
