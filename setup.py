"""lt-detectron: long-tailed detection/segmentation methods as Detectron2 parts.

Like Detectron2's own projects, torch, torchvision and Detectron2 are not listed here, so a user with their
own Detectron2 build can `pip install -e .`; `requirements.txt` and `requirements/current.txt` state the two
tested stacks and `requirements/*.lock` pin every package of each (see docs/install.md).
"""

from setuptools import Extension, find_packages, setup

setup(
    name="lt-detectron",
    version="0.1.0",
    description=(
        "Long-tailed object detection and classification methods (LDA, LADE, CB, LDAM, M2m, meta-weights) "
        "for Detectron2"
    ),
    python_requires=">=3.8",
    packages=find_packages(include=["lt_detectron", "lt_detectron.*"]),
    # Plain C against the CPython API (no numpy headers), for the LVIS evaluator: the reader of Detectron2's results
    # files, compressed RLE masks decoded once for area, box and IoU, and lvis-api's matching and accumulation.
    ext_modules=[
        Extension(
            f"lt_detectron.evaluation.{name}",
            [f"lt_detectron/evaluation/{name}.c"],
            depends=["lt_detectron/evaluation/_buffers.h"],
            extra_compile_args=["-O2"],
        )
        for name in ("_records", "_rle", "_matching")
    ],
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
