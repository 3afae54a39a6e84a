"""lt-detectron: long-tailed detection/segmentation methods as Detectron2 parts.

Like Detectron2's own projects, torch, torchvision and Detectron2 are not listed here, so a user with their
own Detectron2 build can `pip install -e .`; `requirements.txt` and `requirements/current.txt` state the two
tested stacks and `requirements/*.lock` pin every package of each (see docs/install.md).
"""

from setuptools import find_packages, setup

setup(
    name="lt-detectron",
    version="0.1.0",
    description=(
        "Long-tailed object detection and classification methods (LDA, LADE, CB, LDAM, M2m, meta-weights) "
        "for Detectron2"
    ),
    python_requires=">=3.8",
    packages=find_packages(include=["lt_detectron", "lt_detectron.*"]),
    install_requires=[
        "numpy",
        "fvcore",
        "iopath",
        "lvis",
        "pycocotools",
        "faster-coco-eval>=1.8.0",
        "scikit-learn",
        "matplotlib",
        "tqdm",
        "tensorboard",
    ],
    extras_require={"test": ["pytest"]},
)
