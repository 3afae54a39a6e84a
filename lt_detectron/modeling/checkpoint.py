"""Load a stock Detectron2 (Mask R-CNN) checkpoint into a model with LT heads, and report what happened.

Backbone, RPN, box head, box regression (`bbox_pred`) and mask head keep their stock names and load as they are.
Box classifiers:
  - "softmax", "cb", "focal", "cb_focal", "balanced_softmax", "lade": the same `cls_score` (C+1 rows) loads as is;
  - "ldam" with the cosine classifier: `cls_score.weight` loads (its direction is what a cosine layer uses),
    the stock bias is reported as unexpected;
  - "lda": `unbalanced_score` and `balanced_score` start from the stock foreground rows, `fgbg_score` from
    [mean of the foreground rows, background row] (biases: mean + log C, background bias); the projection head
    and the risk-balancer state start fresh (reported as missing).
The conversion itself happens in the predictors' `_load_from_state_dict`, so Detectron2's own
`DetectionCheckpointer` (MODEL.WEIGHTS, `--resume`) applies it too; this module adds the report.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Tuple, Union

import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

__all__ = ["StockLoadReport", "load_stock_checkpoint"]

logger = logging.getLogger(__name__)


@dataclass
class StockLoadReport:
    """Outcome of `load_stock_checkpoint`; every model / checkpoint key is in exactly one list."""

    loaded: List[str] = field(default_factory=list)  # model keys loaded unchanged from the checkpoint
    from_stock: List[Tuple[str, str]] = field(default_factory=list)  # (model key, what it was derived from)
    missing: List[str] = field(default_factory=list)  # model keys the checkpoint does not provide (fresh init)
    unexpected: List[str] = field(default_factory=list)  # checkpoint keys the model does not use
    incorrect_shapes: List[Tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, ckpt, model): fresh

    def table(self) -> str:
        """A plain-text table: one row per status and module, with counts (loaded keys grouped)."""
        rows: List[Tuple[str, str, str]] = []
        grouped: Dict[str, int] = defaultdict(int)
        for key in self.loaded:
            grouped[_module_of(key)] += 1
        rows += [("loaded", module, f"{n} tensors") for module, n in sorted(grouped.items())]
        rows += [("initialised from stock", key, source) for key, source in self.from_stock]
        rows += [("missing (fresh init)", key, "") for key in self.missing]
        rows += [("unexpected (ignored)", key, "") for key in self.unexpected]
        rows += [
            ("shape mismatch (fresh init)", key, f"checkpoint {c} vs model {m}") for key, c, m in self.incorrect_shapes
        ]
        widths = [max(len(r[i]) for r in rows + [("status", "key / module", "detail")]) for i in range(3)]
        lines = [
            "  ".join(h.ljust(w) for h, w in zip(("status", "key / module", "detail"), widths)),
            "  ".join("-" * w for w in widths),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)


def _module_of(key: str, depth: int = 2) -> str:
    return ".".join(key.split(".")[:depth])


class _ReportingCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that keeps the incompatible keys of its last load for the report.

    `_load_model` is fvcore's hook for subclasses (Detectron2's own checkpointer overrides it the same way); only
    this subclass calls it, for a state dict that is already in memory.
    """

    incompatible = None

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load an in-memory state dict with Detectron2's conversions and shape checks, as `load` does for a file."""
        self._load_model({"model": dict(state)})


def load_stock_checkpoint(
    model: nn.Module, checkpoint: Union[str, Mapping[str, torch.Tensor]], log: bool = True
) -> StockLoadReport:
    """Load `checkpoint` (a Detectron2 .pth/.pkl path or URL, or a state dict) into `model`; log the report table.

    Works for any model; for LT box predictors the stock `cls_score` seeds the new classifiers (module docstring).
    """
    predictors = [m for m in model.modules() if hasattr(m, "initialised_from_stock")]
    for m in predictors:
        m.initialised_from_stock = []
    checkpointer = _ReportingCheckpointer(model)
    if isinstance(checkpoint, str):
        checkpointer.load(checkpoint, checkpointables=[])  # Detectron2's reader: .pth, model-zoo .pkl, URLs
    elif isinstance(checkpoint, Mapping):
        checkpointer.load_state_dict(checkpoint.get("model", checkpoint))
    else:
        raise TypeError(
            f"load_stock_checkpoint: checkpoint must be a file path or a state dict, got {type(checkpoint).__name__}."
        )
    incompatible = checkpointer.incompatible
    if incompatible is None:
        raise ValueError(f"load_stock_checkpoint: {checkpoint!r} holds no model weights; pass a Detectron2 checkpoint.")

    from_stock = [pair for m in predictors for pair in m.initialised_from_stock]
    not_loaded = {k for k, _ in from_stock} | set(incompatible.missing_keys)
    not_loaded |= {k for k, _, _ in incompatible.incorrect_shapes}
    report = StockLoadReport(
        loaded=[k for k in model.state_dict() if k not in not_loaded],
        from_stock=from_stock,
        missing=list(incompatible.missing_keys),
        unexpected=list(incompatible.unexpected_keys),
        incorrect_shapes=list(incompatible.incorrect_shapes),
    )
    if log:
        logger.info("Loaded a stock checkpoint into %s:\n%s", type(model).__name__, report.table())
    return report
