"""The builtin image dataset: its samples, what separates its classes, and its cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lionbench.data import builtin_images as bi


def rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    """2000 images at 32 px: the first 1000 fit the classifiers below, the rest score them."""
    return bi.generate(2000, 32, rng(0))


def nearest_class_mean_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Held-out accuracy of a nearest-class-mean classifier on z-scored features (half/half)."""
    half = len(labels) // 2
    mu, sd = features[:half].mean(0), features[:half].std(0) + 1e-9
    f = (features - mu) / sd
    means = np.stack([f[:half][labels[:half] == c].mean(0) for c in range(bi.NUM_CLASSES)])
    dist = ((f[half:, None, :] - means[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == labels[half:]).mean())


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------


def test_class_names():
    assert len(bi.CLASS_NAMES) == bi.NUM_CLASSES == 10
    assert len(set(bi.CLASS_NAMES)) == 10
    assert all(isinstance(name, str) and name for name in bi.CLASS_NAMES)


@pytest.mark.parametrize("n", [0, 1, 7, 10, 123])
def test_shapes_dtypes_and_balanced_labels(n):
    x, y = bi.generate(n, 16, rng(1))
    assert x.shape == (n, 3, 16, 16) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.int64
    counts = np.bincount(y, minlength=10)
    assert len(counts) == 10 and counts.sum() == n
    assert counts.max() - counts.min() <= (1 if n else 0)
    # exactly arange(n) % 10, shuffled
    np.testing.assert_array_equal(np.sort(y), np.sort(np.arange(n) % 10))


def test_labels_are_shuffled_and_pixels_use_the_range(sample):
    x, y = sample
    assert not np.array_equal(y, np.arange(len(y)) % 10)
    assert np.bincount(y, minlength=10).tolist() == [200] * 10
    # colours and noise spread the whole 8-bit range, and no image is flat
    assert x.min() == 0 and x.max() == 255
    assert (x.reshape(len(x), -1).std(1) > 5).all()


def test_same_seed_same_bytes_different_seed_different():
    a_x, a_y = bi.generate(50, 24, rng(3))
    b_x, b_y = bi.generate(50, 24, rng(3))
    c_x, c_y = bi.generate(50, 24, rng(4))
    assert a_x.tobytes() == b_x.tobytes() and a_y.tobytes() == b_y.tobytes()
    assert a_x.tobytes() != c_x.tobytes() and a_y.tobytes() != c_y.tobytes()
    # images differ everywhere, not in a few pixels
    assert np.mean(a_x != c_x) > 0.5


@pytest.mark.parametrize("resolution", [8, 224, 256])
def test_any_resolution(resolution):
    x, y = bi.generate(20, resolution, rng(5))
    assert x.shape == (20, 3, resolution, resolution) and x.dtype == np.uint8
    assert y.min() >= 0 and y.max() <= 9
    assert (x.reshape(20, -1).std(1) > 5).all()


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError):
        bi.generate(-1, 32, rng(0))
    with pytest.raises(ValueError):
        bi.generate(10, 0, rng(0))


def test_classes_are_not_separable_by_mean_colour(sample):
    """Colours are drawn independently of the class and symmetrically for object and background,
    so the mean RGB of an image (and its brightness) says nothing about the class: chance is 10%.
    """
    x, y = sample
    mean_rgb = x.astype(np.float64).mean(axis=(2, 3))  # [n, 3]
    assert nearest_class_mean_accuracy(mean_rgb, y) < 0.2
    brightness_contrast = np.stack([x.mean(axis=(1, 2, 3)), x.std(axis=(1, 2, 3))], axis=1)
    assert nearest_class_mean_accuracy(brightness_contrast, y) < 0.2


def test_classes_are_separable_by_shape(sample):
    """A colour-free, position-free shape feature separates the classes far above chance.

    Each image is projected onto its principal colour axis (the object/background contrast,
    whatever the two colours are), scaled to unit variance, and described by the log magnitude of
    its low spatial frequencies: invariant to colours, to which of the two is brighter and to
    translation, but sensitive to outline, orientation and periodicity."""
    x, y = sample
    n, res = len(x), x.shape[-1]
    pixels = x.reshape(n, 3, -1).astype(np.float64)
    pixels -= pixels.mean(axis=2, keepdims=True)
    _, vectors = np.linalg.eigh(pixels @ pixels.transpose(0, 2, 1))
    gray = np.einsum("nc,ncp->np", vectors[:, :, -1], pixels).reshape(n, res, res)
    gray /= gray.std(axis=(1, 2), keepdims=True)
    low = np.r_[0:9, res - 8 : res]
    spectrum = np.abs(np.fft.fft2(gray))[:, low][:, :, low]
    assert nearest_class_mean_accuracy(np.log1p(spectrum).reshape(n, -1), y) > 0.45


# ---------------------------------------------------------------------------------------------
# load() and its cache
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIONBENCH_CACHE", str(tmp_path))
    return tmp_path / "builtin_images"


def test_load_generates_then_reads_the_cache(cache, monkeypatch):
    first = bi.load(resolution=16, n_train=40, n_val=20, seed=7)
    assert bi.cache_dir() == cache
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary left behind
    assert first.train_x.shape == (40, 3, 16, 16) and first.val_x.shape == (20, 3, 16, 16)
    assert first.train_y.dtype == first.val_y.dtype == np.int64
    assert first.info["class_names"] == list(bi.CLASS_NAMES)
    assert first.info["generator_version"] == bi.GENERATOR_VERSION
    json.dumps(first.info)  # serialisable, for run metadata

    def fail(*args, **kwargs):
        raise AssertionError("generate() called although the cache holds the data")

    monkeypatch.setattr(bi, "generate", fail)
    second = bi.load(resolution=16, n_train=40, n_val=20, seed=7)
    for name in ("train_x", "train_y", "val_x", "val_y"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert second.info == first.info
    # another key is another file, so it must be generated: the stub says so
    with pytest.raises(AssertionError, match="generate"):
        bi.load(resolution=16, n_train=40, n_val=20, seed=8)


def test_load_matches_generate_on_independent_streams(cache):
    data = bi.load(resolution=12, n_train=30, n_val=15, seed=3)
    train = bi.generate(30, 12, np.random.Generator(np.random.PCG64([3, 0])))
    val = bi.generate(15, 12, np.random.Generator(np.random.PCG64([3, 1])))
    np.testing.assert_array_equal(data.train_x, train[0])
    np.testing.assert_array_equal(data.train_y, train[1])
    np.testing.assert_array_equal(data.val_x, val[0])
    np.testing.assert_array_equal(data.val_y, val[1])
    assert not np.array_equal(data.train_x[:15], data.val_x)


def test_val_set_does_not_depend_on_n_train(cache):
    small = bi.load(resolution=16, n_train=20, n_val=30, seed=11)
    large = bi.load(resolution=16, n_train=70, n_val=30, seed=11)
    assert len(list(cache.iterdir())) == 2
    np.testing.assert_array_equal(small.val_x, large.val_x)
    np.testing.assert_array_equal(small.val_y, large.val_y)
    other_seed = bi.load(resolution=16, n_train=20, n_val=30, seed=12)
    assert not np.array_equal(small.val_x, other_seed.val_x)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "foreign"])
def test_a_corrupt_cache_file_is_regenerated(cache, damage, monkeypatch):
    good = bi.load(resolution=16, n_train=20, n_val=10, seed=5)
    (path,) = cache.iterdir()
    blob = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(blob)))
    else:  # a valid npz with every key but other shapes
        fake = {k: np.zeros((3, 3, 16, 16), np.uint8) for k in ("train_x", "val_x")}
        np.savez(path, **fake, train_y=np.zeros(3), val_y=np.zeros(3), info="{}")
    again = bi.load(resolution=16, n_train=20, n_val=10, seed=5)
    np.testing.assert_array_equal(again.train_x, good.train_x)
    np.testing.assert_array_equal(again.val_y, good.val_y)
    assert [p.name for p in cache.iterdir()] == [path.name]
    # the file was rewritten whole: the next call reads it
    monkeypatch.setattr(bi, "generate", None)
    cached = bi.load(resolution=16, n_train=20, n_val=10, seed=5)
    np.testing.assert_array_equal(cached.val_x, good.val_x)
