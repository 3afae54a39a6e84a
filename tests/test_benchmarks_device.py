"""The device-aware benchmarks run end to end with tiny sizes on the CPU and write their tables (`--out`)."""

from __future__ import annotations

import re

import pytest
import torch
from _scripts import load_script


def _load(name: str):
    return load_script(f"benchmarks/{name}.py", f"bench_{name}")


def _ratios(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"\| (\d+\.\d+)x", text)]


def test_loss_throughput_tiny_on_cpu(tmp_path):
    out = tmp_path / "losses.md"
    argv = ["--device", "cpu", "--repeats", "1", "--min-ms", "0", "--shapes", "16x5", "8x3"]
    assert _load("loss_throughput").main(argv + ["--divergence-shape", "32x4x6", "--out", str(out)]) == 0
    text = out.read_text()
    assert "device=cpu" in text and "| loss | 16 x 5 | 8 x 3 | target (cpu) |" in text
    for name in ("cb", "focal", "ldam", "balanced_softmax", "lade"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert len(_ratios(row)) == 2 and all(r > 0 for r in _ratios(row))
    assert "lda_divergence (32 x 4, 6 classes) vs CE 32 x 7" in text


def test_loss_throughput_rejects_bad_shapes_and_missing_cuda(capsys):
    module = _load("loss_throughput")
    with pytest.raises(SystemExit):
        module.main(["--shapes", "16by5"])
    assert "expected 2 positive integers" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="sees no CUDA device"):
            module.main(["--device", "cuda"])


def test_head_overhead_tiny_on_cpu(tmp_path):
    pytest.importorskip("detectron2")
    out = tmp_path / "heads.md"
    argv = ["--device", "cpu", "--heads", "cb", "lda", "--num-classes", "5", "--rois", "16", "--batch", "1"]
    argv += ["--size", "96", "--objects", "2", "--iters", "1", "--head-iters", "1", "--predictor-iters", "1"]
    assert _load("head_overhead").main(argv + ["--out", str(out)]) == 0
    rows = {line.split("|")[1].strip(): line for line in out.read_text().splitlines() if line.startswith("| ")}
    assert {"stock", "cb", "lda"} <= set(rows)
    assert _ratios(rows["stock"])[:3] == [1.0, 1.0, 1.0]  # each ratio of the stock head to itself
    assert all(r > 0 for r in _ratios(rows["lda"]))


def test_meta_overhead_tiny_on_cpu(tmp_path):
    pytest.importorskip("detectron2")
    from lt_detectron.data import generate_lt_shapes, register_lt_shapes

    root = tmp_path / "lt_shapes"
    generate_lt_shapes(str(root), seed=0, overwrite=True, num_train_images=60, num_val_images=8)
    out = tmp_path / "meta.txt"
    tiny = ["SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32"]
    tiny += ["MODEL.LT.META.DEV_PER_CLASS", "1", "DATASETS.LT_SHAPES_DIR", str(root)]
    try:
        assert (
            _load("meta_overhead").main(["--device", "cpu", "--iters", "1", "--warmup", "0", "--out", str(out)] + tiny)
            == 0
        )
    finally:
        register_lt_shapes()  # back to the default root for other tests
    text = out.read_text()
    assert "device: cpu" in text
    plain, meta = (float(v) for v in re.search(r"plain: ([\d.]+) .* meta: ([\d.]+)", text).groups())
    assert plain > 0 and meta > 0
    assert re.search(r"ratio: \d+\.\d+x", text)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loss_throughput_tiny_on_cuda(tmp_path):
    out = tmp_path / "losses.md"
    argv = ["--device", "cuda", "--repeats", "1", "--min-ms", "0", "--shapes", "64x11", "--divergence-shape", "64x8x10"]
    assert _load("loss_throughput").main(argv + ["--out", str(out)]) == 0
    assert "device=cuda" in out.read_text() and "target (cuda)" in out.read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_head_overhead_tiny_on_cuda(tmp_path):
    """The model, the extra predictors and the inputs all on the GPU (it failed on CUDA when they stayed on the CPU)."""
    pytest.importorskip("detectron2")
    out = tmp_path / "heads.md"
    argv = ["--device", "cuda", "--heads", "lda", "lade", "--num-classes", "5", "--rois", "16", "--batch", "1"]
    argv += ["--size", "96", "--objects", "2", "--iters", "1", "--head-iters", "1", "--predictor-iters", "1"]
    assert _load("head_overhead").main(argv + ["--out", str(out)]) == 0
    assert "| lda |" in out.read_text() and "| lade |" in out.read_text()
