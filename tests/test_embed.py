"""core.embed: batched, cached, parallel-decoded image embeddings."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

import core.embed
from core.cache import Cache
from core.embed import embed_pil, embeddings_for, l2_normalise


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
    """The batch sizes passed to the CLIP encoder (a spy around core.embed.encode_preprocessed)."""
    sizes: list[int] = []
    real = core.embed.encode_preprocessed

    def spy(clip, batch):
        sizes.append(len(batch))
        return real(clip, batch)

    monkeypatch.setattr(core.embed, "encode_preprocessed", spy)
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
