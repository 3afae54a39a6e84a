"""Long-tailed image classification on top of `lt_detectron.losses` / `lt_detectron.meta`.

Modules: `datasets` (build_dataset: digits-LT, CIFAR-10/100-LT, ImageNet-LT, Places-LT, iNaturalist 2017/2018),
`models` (build_model -> LTClassifierNet), `methods` (METHOD_REGISTRY: one registered class per method), `trainer`
(ClassificationTrainer), `train` (the command line), `metrics` (evaluate: top-k, many/medium/few, bACC, GM, ECE, NLL,
shifted-prior accuracy), `plots` (save_evaluation: json + PNGs). Submodules are imported on use.
"""
