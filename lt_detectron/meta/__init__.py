"""Meta-learned per-example conditional weights (Algorithm 1 of Jamal et al., CVPR 2020, arXiv:2003.10780).
Plain PyTorch + torch.func.

`MetaReweighter` runs one meta step; `build_dev_split` holds out the class-balanced dev set and
`DevBatchSampler` draws its batches; `plot_eps_by_group` draws the paper's Figure 3. Detectron2 integration
lives in `lt_detectron.engine` (meta_step.py, meta_hook.py, meta_datasets.py).
"""

from .devset import DevBatchSampler, DevSplit, DevSplitReport, build_dev_split
from .engine import META_DEFAULTS, MetaDefaults, MetaReweighter, MetaStepResult, PerExampleLoss, stage_two_start
from .plot import plot_eps_by_group
from .tracker import EpsTracker

__all__ = [
    "MetaReweighter",
    "MetaStepResult",
    "PerExampleLoss",
    "stage_two_start",
    "MetaDefaults",
    "META_DEFAULTS",
    "EpsTracker",
    "build_dev_split",
    "DevSplit",
    "DevSplitReport",
    "DevBatchSampler",
    "plot_eps_by_group",
]
