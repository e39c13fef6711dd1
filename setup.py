"""jaxssl: prototype and clustering self-supervised pretraining in JAX."""

from setuptools import find_packages, setup

setup(
    name="jaxssl",
    version="0.1.0",
    description=(
        "CARP, KoLeo-proto, ExCB and PMSN self-supervised pretraining (with DINO, iBOT "
        "and MSN bases) in JAX / Flax, sharded with jax.jit over a device mesh."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["jaxssl", "jaxssl.*"]),
    install_requires=[
        "jax>=0.6.2,<0.11",
        "flax>=0.10.7,<0.13",
        "optax>=0.2.5,<0.3",
        "orbax-checkpoint>=0.11.20,<0.13",
        "grain>=0.2.10,<0.3",
        "ml-collections>=1.0,<2",
        "chex>=0.1.89,<0.2",
        "tensorflow-datasets>=4.9.6,<5",
        "array-record>=0.7,<0.9",
        "numpy>=1.26,<3",
        "scipy>=1.11,<2",
        "pillow>=10,<14",
        "matplotlib>=3.8,<4",
        "tensorboardX>=2.6,<3",
        "tqdm>=4.66,<5",
        "absl-py>=2.1,<3",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",
            "scikit-learn>=1.4,<2",
            "ruff>=0.6,<1",
            "nbclient>=0.10,<1",
            "nbformat>=5.9,<6",
            "ipykernel>=6.29,<8",
        ],
        # Exact pin: this is the CPU build; a looser range pulls a multi-GB CUDA build.
        "torch": ["torch==2.13.0"],
    },
)
