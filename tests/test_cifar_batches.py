"""lipsort.data.images' reader for the CIFAR-10 python batches (cifar-10-batches-py) on tiny
synthetic folders: pixel-exact round trip and channel order, caps, default places, `auto`,
and the errors for missing and corrupt files."""
import os
import pickle

import ml_collections
import numpy as np
import pytest

from lipsort.data import images

N_TRAIN, N_TEST, PER_BATCH = 20, 3, 4  # 5 train batches of 4, a test batch of 3
RGB = (10, 200, 77)  # one known pixel: train image 0, row 1, column 2


def _cfg(**kw):
    base = dict(dataset="cifar10", source="cifar_batches", data_dir="", pixel_range=(0.0, 1.0),
                num_train=0, num_test=0)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def _write(folder, seed=0):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (N_TRAIN, 32, 32, 3), dtype=np.uint8)
    x_train[0, 1, 2] = RGB
    y_train = rng.integers(0, 10, N_TRAIN)
    x_test = rng.integers(0, 256, (N_TEST, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, N_TEST)
    images.write_cifar_batches(str(folder), x_train, y_train, x_test, y_test, per_batch=PER_BATCH)
    return x_train, y_train, x_test, y_test


@pytest.fixture
def no_defaults(tmp_path, monkeypatch):
    """An empty home and working directory, so no real CIFAR-10 on this machine is found."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def test_roundtrip_is_pixel_exact_in_hwc_order(tmp_path):
    folder = tmp_path / images.CIFAR_FOLDER
    x_train, y_train, x_test, y_test = _write(folder)
    assert sorted(os.listdir(folder)) == ["batches.meta", *images.CIFAR_TRAIN_BATCHES, "test_batch"]
    # The file itself: 1024 red, 1024 green, 1024 blue values per row, each row-major 32×32.
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert raw[b"data"].shape == (PER_BATCH, 3072) and raw[b"data"].dtype == np.uint8
    assert [raw[b"data"][0, c * 1024 + 1 * 32 + 2] for c in range(3)] == list(RGB)
    x, y = images.read_cifar_batch(str(folder / "data_batch_1"))
    assert x.shape == (PER_BATCH, 32, 32, 3) and x.dtype == np.uint8 and tuple(x[0, 1, 2]) == RGB
    np.testing.assert_array_equal(y, y_train[:PER_BATCH])

    for data_dir in (folder, tmp_path):  # the folder itself, or the one containing it
        d = images.load(_cfg(data_dir=str(data_dir), pixel_range=(0.0, 255.0)))
        assert d.source == f"cifar_batches:{folder}" and d.image_shape == (32, 32, 3) and d.dim == 3072
        assert d.x_train.shape == (N_TRAIN, 3072) and d.x_test.shape == (N_TEST, 3072)
        # ImageData flattens HWC: pixel (h, w) channel c sits at (h·32 + w)·3 + c.
        assert [d.x_train[0, (1 * 32 + 2) * 3 + c] for c in range(3)] == list(RGB)
        np.testing.assert_array_equal(d.x_train, x_train.reshape(N_TRAIN, -1).astype(np.float32))
        np.testing.assert_array_equal(d.x_test, x_test.reshape(N_TEST, -1).astype(np.float32))
        np.testing.assert_array_equal(d.y_train, y_train)
        np.testing.assert_array_equal(d.y_test, y_test)


def test_caps_read_only_the_batches_needed(tmp_path):
    x_train, _, x_test, _ = _write(tmp_path)
    (tmp_path / "data_batch_5").write_bytes(b"corrupt, but not needed")
    d = images.load(_cfg(data_dir=str(tmp_path), num_train=6, num_test=2, pixel_range=(0.0, 255.0)))
    assert d.source == f"cifar_batches:{tmp_path} (data_batch_1..2 of 5, for num_train=6)"
    assert d.x_train.shape == (6, 3072) and d.x_test.shape == (2, 3072)
    np.testing.assert_array_equal(d.x_train, x_train[:6].reshape(6, -1))
    np.testing.assert_array_equal(d.x_test, x_test[:2].reshape(2, -1))
    _write(tmp_path)
    with pytest.raises(images.DataUnavailableError, match="num_train=21 but .* has 20 train images"):
        images.load(_cfg(data_dir=str(tmp_path), num_train=21))


def test_default_places_and_auto_picks_cifar_batches(tmp_path, monkeypatch, no_defaults):
    # A prepared tfds would win in `auto`; stubbed out so the test is fast and does not depend on it.
    def no_tfds(req):
        raise images.DataUnavailableError("tfds stubbed out")

    monkeypatch.setitem(images._LOADERS, "tfds", no_tfds)
    monkeypatch.setitem(images._AVAILABLE, "tfds", lambda req: False)
    assert not images.is_available(_cfg(source="auto"))
    with pytest.raises(images.DataUnavailableError, match="no source has 'cifar10'") as e:
        images.load(_cfg(source="auto"))  # nothing anywhere: the message says how to get the real data
    assert f"cifar-10-python.tar.gz (the CIFAR-10 python version, 163 MB) from {images.CIFAR_URL}" in str(e.value)
    _write(tmp_path / "data" / images.CIFAR_FOLDER)  # ./data/cifar-10-batches-py
    d = images.load(_cfg(source="auto"))
    assert d.source == "cifar_batches:./data/cifar-10-batches-py" and len(d.x_train) == N_TRAIN
    _write(tmp_path / "home" / ".keras" / "datasets" / images.CIFAR_FOLDER)  # tried first
    assert images.load(_cfg()).source == f"cifar_batches:{tmp_path}/home/.keras/datasets/cifar-10-batches-py"
    assert images.is_available(_cfg(source="auto")) and images.is_available(_cfg())
    assert not images.is_available(_cfg(dataset="fashion_mnist", source="cifar_batches"))
    assert images.AUTO_ORDER.index("idx") < images.AUTO_ORDER.index("cifar_batches") < images.AUTO_ORDER.index("bundled")


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_corrupt_batches_are_clear_errors(tmp_path):
    _write(tmp_path)
    path = tmp_path / "data_batch_1"
    good = path.read_bytes()
    rows = np.zeros((2, 3072), np.uint8)
    cases = [
        (b"not a pickle at all", "not a CIFAR-10 python batch .cannot unpickle"),
        (good[: len(good) // 2], "cannot unpickle"),
        ([1, 2, 3], "a pickled list, not a dict"),
        ({b"data": rows, b"fine_labels": [0, 1]}, "not b'data' and b'labels' .b'fine_labels' means CIFAR-100"),
        ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"expected b'data' a uint8 array \(n, 3072\)"),
        ({b"data": rows.astype(np.float32), b"labels": [0, 1]}, "expected b'data' a uint8"),
        ({b"data": rows, b"labels": [0, 1, 2]}, "3 labels"),
        ({b"data": rows, b"labels": [0, 10]}, r"labels outside 0..9"),
        (_Evil(str(tmp_path / "pwned")), "refusing to load posix.mkdir|refusing to load os.mkdir"),
    ]
    for content, message in cases:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            _pickle(path, content)
        with pytest.raises(ValueError, match=message) as e:
            images.load(_cfg(data_dir=str(tmp_path)))
        assert not isinstance(e.value, images.DataUnavailableError)
        assert str(path) in str(e.value) and images.CIFAR_URL in str(e.value), str(e.value)
    assert not (tmp_path / "pwned").exists()


def test_python2_numpy_global_is_accepted(tmp_path):
    # Python 2's numpy pickled arrays as numpy.core.multiarray._reconstruct (numpy 2: numpy._core).
    _write(tmp_path)
    path = tmp_path / "test_batch"
    raw = path.read_bytes()
    legacy = raw.replace(b"numpy._core.multiarray\n_reconstruct", b"numpy.core.multiarray\n_reconstruct")
    path.write_bytes(legacy)
    x, _ = images.read_cifar_batch(str(path))
    assert x.shape == (N_TEST, 32, 32, 3)


def test_missing_data_says_how_to_get_it(tmp_path, no_defaults):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(images.DataUnavailableError, match="cifar-10-python.tar.gz") as e:
        images.load(_cfg(data_dir=str(empty)))
    assert images.CIFAR_URL in str(e.value) and str(empty / images.CIFAR_FOLDER) in str(e.value)
    with pytest.raises(images.DataUnavailableError, match=r"~/.keras/datasets, ~/data, ./data"):
        images.load(_cfg())  # nothing in the default places
    _write(tmp_path / "part")
    os.remove(tmp_path / "part" / "data_batch_3")
    with pytest.raises(images.DataUnavailableError, match="missing data_batch_3"):
        images.load(_cfg(data_dir=str(tmp_path / "part")))
    assert not images.is_available(_cfg(data_dir=str(tmp_path / "part")))
    with pytest.raises(images.DataUnavailableError, match="hold only cifar10, not 'mnist'"):
        images.load(_cfg(dataset="mnist", data_dir=str(tmp_path / "part")))
    # CIFAR10 through IDX points at the batches too.
    with pytest.raises(images.DataUnavailableError, match="use source='cifar_batches'"):
        images.load(_cfg(source="idx", data_dir=str(empty)))
