"""Start-up time and peak memory of tools/train_net.py on an LVIS-sized annotation file, before/after a change.

    python benchmarks/train_startup.py --before-repo /tmp/before     # a checkout of the commit to compare with

Generates (once, cached in --data-dir) an LVIS v1-sized train json: 1,203 classes with a long-tailed frequency,
100,000 images and 1,270,000 box annotations, each with a 4-point polygon (no image files). Then, in a fresh
process per row, runs tools/train_net.py's code path (`invoke_main`, one process) with configs/lvis_lda.yaml on it
up to the first iteration: config set-up, dataset checks, model build (the LDA predictor reads the class counts),
optimizer, train data loader with repeat-factor sampling, hooks. `LTTrainer.train` is replaced by a stop, so no
image is read. Each row reports the wall time from `invoke_main` to that stop, the process's peak resident memory
(ru_maxrss), and how often the annotation json was parsed (`json.load`) and the dataset dicts were built.

Rows: the --before-repo checkout and this repository on a custom LVIS-format dataset, and this repository on the
same file registered like Detectron2's builtin LVIS (`lvis_v1_*` name: not walked by the check) with a
category-info file. Writes benchmarks/results/train_startup.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES, NUM_IMAGES, NUM_ANNOTATIONS = 1203, 100_000, 1_270_000
CUSTOM, BUILTIN_LIKE = "bench_lvis_train", "lvis_v1_bench_train"


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
def child(args: argparse.Namespace) -> None:
    """One measured start-up, in this (fresh) process, with --repo's code first on sys.path."""
    sys.path.insert(0, args.repo)
    os.chdir(args.repo)
    counts = {"json_loads": 0, "dataset_loads": 0}
    original_load = json.load

    def counting_load(fp, *a, **kw):
        if os.path.abspath(getattr(fp, "name", "")) == os.path.abspath(args.json):
            counts["json_loads"] += 1
        return original_load(fp, *a, **kw)

    json.load = counting_load
    import importlib.util

    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets.lvis import load_lvis_json

    image_root = os.path.join(args.data_dir, "coco") + os.sep
    for split in ("train2017", "val2017"):  # empty: no image is read, the folders only need to exist
        os.makedirs(image_root + split, exist_ok=True)

    def load():
        counts["dataset_loads"] += 1
        return load_lvis_json(args.json, image_root, dataset_name=None)

    with open(args.json + ".names") as f:
        names = json.load(f)
    DatasetCatalog.register(args.dataset, load)
    fields = dict(thing_classes=names, json_file=args.json, image_root=image_root, evaluator_type="lvis")
    if args.cat_info:
        fields["cat_info_file"] = args.cat_info
    MetadataCatalog.get(args.dataset).set(**fields)

    spec = importlib.util.spec_from_file_location(
        "train_net_under_test", os.path.join(args.repo, "tools", "train_net.py")
    )
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    out = tempfile.mkdtemp(prefix="startup_")
    stop = {}

    def stop_before_first_iteration(trainer):
        stop["t"] = time.perf_counter()

    train_net.LTTrainer.train = stop_before_first_iteration
    sys.argv = [
        "train_net.py",
        "--config-file",
        os.path.join(args.repo, "configs", args.config),
        "MODEL.DEVICE", "cpu",
        "MODEL.WEIGHTS", "",
        "DATASETS.TRAIN", f"('{args.dataset}',)",
        "DATASETS.TEST", "()",
        "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "2",
        "OUTPUT_DIR", out,
    ]  # fmt: skip
    start = time.perf_counter()
    train_net.invoke_main()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("RESULT " + json.dumps({"seconds": stop["t"] - start, "peak_gib": peak_kib / 2**20, **counts}), flush=True)


# ----------------------------------------------------------------------------------------------------- parent
def _measure(repo: str, json_file: str, data_dir: str, dataset: str, config: str, cat_info: str = "") -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--repo", repo, "--json", json_file]
    cmd += ["--data-dir", data_dir, "--dataset", dataset, "--config", config, "--cat-info", cat_info]
    env = dict(os.environ, PYTHONPATH=repo, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"start-up run failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before-repo", default="", help="checkout of the commit to compare with (a git worktree)")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "lt_detectron_startup"))
    parser.add_argument("--config", default="lvis_lda.yaml", help="under configs/")
    parser.add_argument("--output", default=os.path.join(REPO, "benchmarks", "results", "train_startup.md"))
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the images and annotations (smoke test)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repo", default=REPO, help=argparse.SUPPRESS)
    parser.add_argument("--json", default="", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default=CUSTOM, help=argparse.SUPPRESS)
    parser.add_argument("--cat-info", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
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
    cat_info = json_file[: -len(".json")] + "_cat_info.json"
    subprocess.run(  # the category-info CLI: python -m lt_detectron.data.stats JSON --out FILE
        [sys.executable, "-c", "import sys; from lt_detectron.data.stats import main; main(sys.argv[1:])"]
        + [json_file, "--out", cat_info],
        check=True,
        env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
    )

    # Here, not at the top: a child run must import lt_detectron from its own --repo.
    from lt_detectron.utils.provenance import git_commit

    rows = []
    runs = []
    if args.before_repo:
        runs.append((f"before ({git_commit(args.before_repo)})", args.before_repo, CUSTOM, ""))
    runs.append((f"after ({git_commit(REPO)})", REPO, CUSTOM, ""))
    runs.append((f"after ({git_commit(REPO)}), builtin-LVIS-like + category-info file", REPO, BUILTIN_LIKE, cat_info))
    for label, repo, dataset, info in runs:
        result = _measure(repo, json_file, args.data_dir, dataset, args.config, info)
        print(label, result, flush=True)
        rows.append(
            f"| {label} | {dataset} | {result['seconds']:.1f} | {result['peak_gib']:.2f} | "
            f"{result['json_loads']} | {result['dataset_loads']} |"
        )
    size = os.path.getsize(json_file) / 2**20
    command = " ".join(["python benchmarks/train_startup.py", *(sys.argv[1:] if argv is None else argv)])
    text = "\n".join(
        [
            "# tools/train_net.py start-up on an LVIS v1-sized annotation file",
            "",
            f"Generated train json: {NUM_CLASSES:,} classes, {num_images:,} images, {num_annotations:,} annotations "
            f"(boxes with 4-point polygons), {size:.0f} MiB; config configs/{args.config} on the CPU, one process, "
            "OMP_NUM_THREADS=1. Measured from `invoke_main` to the first iteration (model, optimizer, data loader "
            "and hooks built; no image read). Peak memory is the process's maximum resident set size.",
            "",
            "| code | dataset | start-up (s) | peak memory (GiB) | json parses | dataset-dict builds |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs; "
            f"Python {platform.python_version()}.",
            f"Command: `{command}`",
            "",
        ]
    )
    from lt_detectron.utils import atomic_write

    atomic_write(args.output, lambda f: f.write(text), binary=False)
    print(text)
    return text


if __name__ == "__main__":
    main()
