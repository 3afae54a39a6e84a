"""Start-up time and peak memory of tools/train_net.py against stock Detectron2 on an LVIS v1-sized annotation file.

    python benchmarks/train_startup.py                      # stock and lt-detectron, 1 and 2 processes
    python benchmarks/train_startup.py --scale 0.05 --repeats 1 --output /tmp/startup.md   # a quick look

Generates (once, cached in --data-dir) an LVIS v1-sized train json: 1,203 classes with a long-tailed frequency,
100,000 images and 1,270,000 box annotations, each with a 4-point polygon, categories carrying `image_count` and
`instance_count` as LVIS v1's do (no image files). It is registered in every process like Detectron2's builtin
LVIS splits (an `lvis_v1_*` name loaded by Detectron2's `load_lvis_json`). Then, in a fresh process per run:

- stock: Detectron2's model-zoo LVIS v1 Mask R-CNN R50-FPN config through `DefaultTrainer` + `resume_or_load`;
- lt-detectron: `tools/train_net.py --config-file configs/lvis_lda.yaml`, and configs/lvis_baseline.yaml (stock's
  model through lt-detectron's entry point) (its `invoke_main`: config, dataset checks
  before `launch`, then in each process the trainer: model with the LDA predictor's class counts, optimizer, the
  repeat-factor train loader, hooks), its training loop replaced by a stop;
- with 1 process (in the launching process) and 2 processes (gloo workers on the CPU; the stock trainer's DDP
  wrapper gets lt-detectron's CPU adaptation, `cpu_aware_ddp`, the only non-stock piece of its rows).

Each run reports the wall time from the entry point to the last process's built trainer, every process's peak
resident memory (ru_maxrss), and how often each process parsed the annotation json (`json.load` of the file,
lvis-api's included) and built the dataset dicts. Runs alternate stock / lt-detectron and repeat (--repeats); the
table gives the median. Writes benchmarks/results/train_startup.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES, NUM_IMAGES, NUM_ANNOTATIONS = 1203, 100_000, 1_270_000
DATASET = "lvis_v1_bench_train"  # Detectron2's builtin LVIS naming: lt-detectron does not walk it before launch
STOCK_CONFIG = "LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
COMMON_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "DATASETS.TRAIN", f"('{DATASET}',)",
    "DATASETS.TEST", "()",
    "DATALOADER.NUM_WORKERS", "0",
    "SOLVER.IMS_PER_BATCH", "2",
]  # fmt: skip
_ENV = "LT_STARTUP_CHILD"  # the child's settings (json), inherited by spawned workers


# ----------------------------------------------------------------------------------------------------- data
def generate(path: str, num_images: int = NUM_IMAGES, num_annotations: int = NUM_ANNOTATIONS, seed: int = 0) -> None:
    """An LVIS v1-sized train json: Zipf-like class frequencies (every class present), boxes inside 640x480 images."""
    import numpy as np

    NUM_IMAGES, NUM_ANNOTATIONS = num_images, num_annotations  # noqa: N806

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, NUM_CLASSES + 1) ** 1.1
    cats = np.concatenate(
        [np.arange(NUM_CLASSES), rng.choice(NUM_CLASSES, NUM_ANNOTATIONS - NUM_CLASSES, p=weights / weights.sum())]
    )
    images = rng.integers(NUM_IMAGES, size=NUM_ANNOTATIONS)
    images[:NUM_IMAGES] = rng.permutation(NUM_IMAGES)  # every image annotated
    w = rng.integers(4, 200, size=NUM_ANNOTATIONS)
    h = rng.integers(4, 200, size=NUM_ANNOTATIONS)
    x = rng.integers(0, 640 - 200, size=NUM_ANNOTATIONS)
    y = rng.integers(0, 480 - 200, size=NUM_ANNOTATIONS)
    image_count = np.zeros(NUM_CLASSES, dtype=np.int64)
    np.add.at(image_count, np.unique(images * NUM_CLASSES + cats) % NUM_CLASSES, 1)
    instance_count = np.bincount(cats, minlength=NUM_CLASSES)
    freq = np.where(image_count <= 10, "r", np.where(image_count <= 100, "c", "f"))
    data = {
        "info": {"description": "lt-detectron start-up benchmark: LVIS v1-sized, generated"},
        "licenses": [],
        "categories": [
            {
                "id": c + 1,
                "name": f"class_{c:04d}",
                "synonyms": [f"class_{c:04d}"],
                "frequency": str(freq[c]),
                "image_count": int(image_count[c]),
                "instance_count": int(instance_count[c]),
            }
            for c in range(NUM_CLASSES)
        ],
        "images": [
            {
                "id": i + 1,
                "width": 640,
                "height": 480,
                "coco_url": f"http://images.cocodataset.org/train2017/{i + 1:012d}.jpg",
                "neg_category_ids": [],
                "not_exhaustive_category_ids": [],
            }
            for i in range(NUM_IMAGES)
        ],
        "annotations": [
            {
                "id": k + 1,
                "image_id": int(images[k]) + 1,
                "category_id": int(cats[k]) + 1,
                "bbox": [int(x[k]), int(y[k]), int(w[k]), int(h[k])],
                "area": int(w[k] * h[k]),
                "segmentation": [
                    [
                        int(x[k]),
                        int(y[k]),
                        int(x[k] + w[k]),
                        int(y[k]),
                        int(x[k] + w[k]),
                        int(y[k] + h[k]),
                        int(x[k]),
                        int(y[k] + h[k]),
                    ]
                ],
            }
            for k in range(NUM_ANNOTATIONS)
        ],
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------- child
def _settings() -> dict:
    return json.loads(os.environ[_ENV])


def _instrument_and_register() -> dict:
    """Count json parses of the benchmark file and dataset-dict builds, and register the dataset (every process)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets.lvis import load_lvis_json

    settings = _settings()
    counts = {"json_loads": 0, "dataset_loads": 0}
    target = os.path.abspath(settings["json"])
    original_load = json.load

    def counting_load(fp, *a, **kw):
        if os.path.abspath(getattr(fp, "name", "") or "") == target:
            counts["json_loads"] += 1
        return original_load(fp, *a, **kw)

    json.load = counting_load  # lvis-api's LVIS(...) and lt-detectron's checks both read through json.load

    def load():
        counts["dataset_loads"] += 1
        return load_lvis_json(settings["json"], settings["image_root"], dataset_name=None)

    with open(settings["json"] + ".names") as f:
        names = json.load(f)
    if DATASET in DatasetCatalog.list():
        DatasetCatalog.remove(DATASET)
        MetadataCatalog.remove(DATASET)
    DatasetCatalog.register(DATASET, load)
    MetadataCatalog.get(DATASET).set(
        thing_classes=names, json_file=settings["json"], image_root=settings["image_root"], evaluator_type="lvis"
    )
    return counts


def _report(counts: dict, built_at: float) -> None:
    from detectron2.utils import comm

    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    record = {"rank": comm.get_rank(), "built_at": built_at, "peak_gib": peak_gib, **counts}
    # A file per rank: the processes share one stdout, where their lines may interleave.
    with open(os.path.join(_settings()["results"], f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump(record, f)


def _load_train_net():
    import importlib.util

    path = os.path.join(_settings()["repo"], "tools", "train_net.py")
    spec = importlib.util.spec_from_file_location("train_net_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lt_worker(args) -> None:
    """tools/train_net.py's `main` in one process, its training loop replaced by the measurement."""
    counts = _instrument_and_register()
    train_net = _load_train_net()
    train_net.LTTrainer.train = lambda trainer: _report(counts, time.time())
    train_net.main(args)


def _stock_worker(args) -> None:
    """Stock Detectron2 in one process: model-zoo config, `default_setup`, `DefaultTrainer`, `resume_or_load`."""
    counts = _instrument_and_register()
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultTrainer, default_setup

    from lt_detectron.engine.distributed import cpu_aware_ddp

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    with cpu_aware_ddp():  # DDP without device_ids on the CPU (gloo); a no-op with one process
        trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    _report(counts, time.time())


def child() -> None:
    """One measured start-up in this fresh process (and its workers), with the settings' repo first on sys.path."""
    settings = _settings()
    sys.path.insert(0, settings["repo"])
    os.chdir(settings["repo"])
    from lt_detectron.utils.numerics import pin_cpu_numerics

    pin_cpu_numerics()  # as tools/train_net.py does first (the stock run gets the same kernels)
    out = tempfile.mkdtemp(prefix="startup_")
    argv = ["--num-gpus", str(settings["processes"]), "--dist-url", "auto", "--config-file"]
    start = time.time()
    if settings["kind"] == "stock":
        from detectron2 import model_zoo
        from detectron2.engine import default_argument_parser

        from lt_detectron.engine.distributed import launch

        config = model_zoo.get_config_file(STOCK_CONFIG)
        args = default_argument_parser().parse_args(argv + [config, *COMMON_OPTS, "OUTPUT_DIR", out])
        launch(_stock_worker, args.num_gpus, device="cpu", args=(args,))
    else:
        config = os.path.join(settings["repo"], "configs", settings["config"])  # kind "lt"
        counts = _instrument_and_register()  # the launching process: what it parses before `launch`
        train_net = _load_train_net()
        real_launch = train_net.launch

        def launch_measured(main_func, *a, **kw):  # workers run train_net.main, stopped before training
            if settings["processes"] == 1:
                train_net.LTTrainer.train = lambda trainer: _report(counts, time.time())
                return real_launch(main_func, *a, **kw)
            with open(os.path.join(settings["results"], "launcher.json"), "w") as f:
                json.dump(counts, f)
            return real_launch(_lt_worker, *a, **kw)

        train_net.launch = launch_measured
        train_net.invoke_main(argv + [config, *COMMON_OPTS, "OUTPUT_DIR", out])
    with open(os.path.join(settings["results"], "start.json"), "w") as f:
        json.dump({"start": start}, f)


# ----------------------------------------------------------------------------------------------------- parent
def _measure(kind: str, processes: int, repo: str, json_file: str, image_root: str, config: str) -> dict:
    results = tempfile.mkdtemp(prefix="startup_results_")
    settings = dict(
        kind=kind, processes=processes, repo=repo, json=json_file, image_root=image_root, config=config, results=results
    )
    env = dict(os.environ, PYTHONPATH=repo, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env[_ENV] = json.dumps(settings)
    cmd = [sys.executable, os.path.abspath(__file__), "--child"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)

    def read(name: str):
        path = os.path.join(results, name)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)

    ranks = [read(f"rank{r}.json") for r in range(processes)]
    start, launcher = read("start.json"), read("launcher.json")
    if proc.returncode or None in ranks or start is None:
        raise RuntimeError(f"start-up run failed ({kind}, {processes} processes):\n{proc.stderr[-4000:]}")
    return {
        "seconds": max(r["built_at"] for r in ranks) - start["start"],
        "peak_gib": max(r["peak_gib"] for r in ranks),
        "json_loads": [r["json_loads"] for r in ranks],
        "dataset_loads": [r["dataset_loads"] for r in ranks],
        "before_launch": launcher["json_loads"] if launcher else 0,
    }


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "lt_detectron_startup"))
    parser.add_argument(
        "--configs",
        default="lvis_lda.yaml,lvis_baseline.yaml",
        help="comma-separated lt-detectron configs under configs/ (default: %(default)s; lvis_baseline is stock's "
        "model through tools/train_net.py, so its row isolates the entry point's cost from the head's parameters)",
    )
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating stock / lt-detectron pairs per count")
    parser.add_argument("--output", default=os.path.join(REPO, "benchmarks", "results", "train_startup.md"))
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the images and annotations (smoke test)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child()
        return ""

    os.makedirs(args.data_dir, exist_ok=True)
    num_images, num_annotations = int(NUM_IMAGES * args.scale), int(NUM_ANNOTATIONS * args.scale)
    json_file = os.path.join(args.data_dir, f"lvis_sized_train_{num_images}_{num_annotations}.json")
    if not os.path.isfile(json_file):
        t = time.perf_counter()
        generate(json_file, num_images, num_annotations)
        print(
            f"generated {json_file} ({os.path.getsize(json_file) / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s"
        )
    with open(json_file + ".names", "w") as f:  # the generator's names, without parsing the big file here
        json.dump([f"class_{c:04d}" for c in range(NUM_CLASSES)], f)
    image_root = os.path.join(args.data_dir, "coco") + os.sep
    for split in ("train2017", "val2017"):  # empty: no image is read, the folders only need to exist
        os.makedirs(image_root + split, exist_ok=True)

    sys.path.insert(0, REPO)
    from _results import format_markdown_table, write_results

    configs = [c for c in args.configs.split(",") if c]
    rows, ratios = [], []
    for processes in [int(p) for p in args.processes.split(",")]:
        runs = {"stock": [], **{config: [] for config in configs}}
        for repeat in range(args.repeats):
            for kind in runs:
                config = "" if kind == "stock" else kind
                result = _measure("stock" if kind == "stock" else "lt", processes, REPO, json_file, image_root, config)
                print(f"{processes} process(es), {kind}, run {repeat + 1}/{args.repeats}: {result}", flush=True)
                runs[kind].append(result)
        medians = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
        for kind, results in runs.items():
            last = results[-1]
            ratio = medians[kind] / medians["stock"]
            if kind != "stock":
                ratios.append((processes, kind, ratio))
            rows.append(
                [
                    "stock Detectron2" if kind == "stock" else f"tools/train_net.py, configs/{kind}",
                    processes,
                    f"{medians[kind]:.1f} ({', '.join('%.1f' % r['seconds'] for r in results)})",
                    f"{ratio:.2f}x",
                    f"{max(r['peak_gib'] for r in results):.3f}",
                    last["before_launch"],
                    " / ".join(map(str, last["json_loads"])),
                    " / ".join(map(str, last["dataset_loads"])),
                ]
            )
    size = os.path.getsize(json_file) / 2**20
    header = [
        "trainer",
        "processes",
        "start-up s, median (runs)",
        "vs stock",
        "peak memory per process (GiB)",
        "json parses before launch",
        "json parses per process",
        "dataset-dict builds per process",
    ]
    body = "\n".join(
        [
            f"Generated train json: {NUM_CLASSES:,} classes, {num_images:,} images, {num_annotations:,} annotations "
            f"(boxes with 4-point polygons), {size:.0f} MiB, registered as the builtin-style `{DATASET}`. Stock: "
            f"Detectron2's `{STOCK_CONFIG}` through `DefaultTrainer`; lt-detectron: `tools/train_net.py "
            "--config-file` with each config. All on the CPU, OMP_NUM_THREADS=1 per process, from the entry point to "
            "the last process's built trainer (model, optimizer, train loader with repeat factor sampling, hooks; no "
            "image read). Peak memory: the largest ru_maxrss of the processes. lvis-api's own json read inside "
            "Detectron2's loader counts as a parse.",
            "",
            format_markdown_table(header, rows),
            "",
            "Ratios to stock (medians): "
            + "; ".join(f"{p} process{'es' if p > 1 else ''}, {c}: {r:.2f}x" for p, c, r in ratios)
            + ". The runs alternate, so a load change on the shared machine hits every row.",
        ]
    )
    command = " ".join(["python benchmarks/train_startup.py", *(sys.argv[1:] if argv is None else argv)])
    text = write_results(
        args.output, "tools/train_net.py start-up against stock Detectron2", command, body, threads="1"
    )
    print(text)
    return text


if __name__ == "__main__":
    main()
