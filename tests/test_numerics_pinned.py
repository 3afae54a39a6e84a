"""Training numerics are pinned: the demo baseline (configs/demo/lt_shapes_baseline.yaml, the stock softmax head)
trained a few iterations under the pinned AVX2 CPU kernels (lt_detectron/utils/numerics.py) gives loss terms equal,
float for float, to the recorded ones. Any change that moves training numerics (a loss, the model, the data, the
seeding, a library) fails here, on every x86 CPU with AVX2: with the pin, an AVX-512 CPU gives the same values.

Quick (always): a 12-image lt_shapes, batch 2, 10 iterations, 1 thread, every loss term at every iteration.
Opt-in (LT_FULL_NUMERICS=1, ~40 s on 2 idle cores): the demo itself, 20 iterations on the full lt_shapes with
2 threads; its logged total_loss at iteration 19 was recorded on an AVX2-only EPYC and reproduced with the pin on
an AVX-512 one (issue 20; benchmarks/results/lt_shapes_demo.md).

Each run is a fresh process with the pin and the thread count set before torch loads (this process may have neither).
Print the current values, to update RECORDED after an intended change:
    python tests/test_numerics_pinned.py [--full]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_BASELINE = os.path.join(REPO, "configs", "demo", "lt_shapes_baseline.yaml")
QUICK = {
    "threads": 1,
    "images": (12, 8),
    "opts": [
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", "10",
        "SOLVER.WARMUP_ITERS", "2",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "DATASETS.TEST", "()",
    ],
}  # fmt: skip
# The command of issue 20: tools/train_net.py --config-file <demo baseline> SOLVER.MAX_ITER 20 DATASETS.TEST "()".
FULL = {"threads": 2, "images": None, "opts": ["SOLVER.MAX_ITER", "20", "DATASETS.TEST", "()"]}

# Per torch version (the stacks' lock files pin it; Detectron2, NumPy and OpenCV come with the stack).
# quick: {loss name: [value at iteration 0, 1, ...]}; full: the total_loss Detectron2 logs at iteration 19
# (the median of the last 20 iterations' values, as in metrics.json).
RECORDED: Dict[str, Dict[str, object]] = {
    "2.3.1": {
        "quick": {
            "total_loss": [
                4.898691758513451,
                5.095217103138566,
                4.031966261565685,
                4.953123949468136,
                4.763843860477209,
                3.3553074970841408,
                3.2316499017179012,
                2.596360858529806,
                3.3488116413354874,
                2.531542245298624,
            ],
            "loss_cls": [
                3.4421393871307373,
                3.4065732955932617,
                2.1344478130340576,
                3.223510265350342,
                3.105715036392212,
                1.6127841472625732,
                1.586796522140503,
                1.0890506505966187,
                1.31836998462677,
                1.0377117395401,
            ],
            "loss_box_reg": [
                0.05499895662069321,
                0.28589630126953125,
                0.48669013381004333,
                0.36323311924934387,
                0.32222455739974976,
                0.4050107002258301,
                0.33706480264663696,
                0.2365790605545044,
                0.7976003885269165,
                0.3471912443637848,
            ],
            "loss_mask": [
                0.6930786371231079,
                0.6937751770019531,
                0.6928189396858215,
                0.693463146686554,
                0.6941145062446594,
                0.6931721568107605,
                0.6880519390106201,
                0.6767153739929199,
                0.684477686882019,
                0.6888862252235413,
            ],
            "loss_rpn_cls": [
                0.6930079460144043,
                0.692704975605011,
                0.6843823194503784,
                0.6534398198127747,
                0.6201024651527405,
                0.6155402064323425,
                0.606974720954895,
                0.5765190720558167,
                0.5247307419776917,
                0.43545863032341003,
            ],
            "loss_rpn_loc": [
                0.015466831624507904,
                0.016267353668808937,
                0.03362705558538437,
                0.01947759836912155,
                0.02168729528784752,
                0.02880028635263443,
                0.0127619169652462,
                0.017496701329946518,
                0.02363283932209015,
                0.022294405847787857,
            ],
        },
        "full": 2.6931374734267592,
    },
    "2.11.0": {
        # The current stack (requirements/current.lock: torch 2.11, Detectron2 02b5c4e, its OpenCV): its own values.
        "quick": {
            "total_loss": [
                4.898434793576598,
                5.094726260751486,
                4.078318368643522,
                4.980394264683127,
                5.0996854566037655,
                3.4768255297094584,
                3.102689767256379,
                2.994988676160574,
                3.241157842800021,
                2.033031903207302,
            ],
            "loss_cls": [
                3.4418821334838867,
                3.4060800075531006,
                2.0826094150543213,
                3.2410669326782227,
                3.3210461139678955,
                1.6241081953048706,
                1.5484073162078857,
                1.4083062410354614,
                1.4712252616882324,
                0.6263856291770935,
            ],
            "loss_box_reg": [
                0.054998740553855896,
                0.28589898347854614,
                0.5849400758743286,
                0.37301158905029297,
                0.44405263662338257,
                0.5184715986251831,
                0.24016185104846954,
                0.31024274230003357,
                0.536845326423645,
                0.20172564685344696,
            ],
            "loss_mask": [
                0.6930787563323975,
                0.6937752366065979,
                0.692807137966156,
                0.6933738589286804,
                0.6939466595649719,
                0.6936068534851074,
                0.6913120150566101,
                0.6761895418167114,
                0.6788455843925476,
                0.6862121820449829,
            ],
            "loss_rpn_cls": [
                0.6930083632469177,
                0.6927046775817871,
                0.6842529773712158,
                0.6536821722984314,
                0.6189242601394653,
                0.6127832531929016,
                0.6090933084487915,
                0.5834209322929382,
                0.5305196642875671,
                0.49690645933151245,
            ],
            "loss_rpn_loc": [
                0.015466799959540367,
                0.016267355531454086,
                0.033708762377500534,
                0.019259711727499962,
                0.021715786308050156,
                0.027855629101395607,
                0.01371527649462223,
                0.016829218715429306,
                0.023722006008028984,
                0.021801985800266266,
            ],
        },
    },
}

UPDATE_HINT = (
    "A change that moves training numerics must update RECORDED in tests/test_numerics_pinned.py in the same commit "
    "(`python tests/test_numerics_pinned.py` prints the new values; --full for the 20-iteration one) and say in "
    "the commit message why the numbers moved. If the change was not meant to move them, this is a regression."
)


def _pinned_env(threads: int) -> Dict[str, str]:
    from lt_detectron.utils.numerics import OPT_OUT, PINNED_ISA

    env = {k: v for k, v in os.environ.items() if k != OPT_OUT}
    env.update(PINNED_ISA)  # the pin, whatever this process was started with
    env.update(OMP_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")])))
    return env


def run_pinned(spec: dict) -> dict:
    """Train in a fresh, pinned process; its losses: {"quick": {name: [per iteration]}, "logged_total": float}."""
    with tempfile.TemporaryDirectory(prefix="lt_numerics_") as tmp:
        out = os.path.join(tmp, "losses.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--emit", out, json.dumps(spec)]
        proc = subprocess.run(cmd, cwd=REPO, env=_pinned_env(spec["threads"]), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the pinned training run failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        with open(out) as f:
            return json.load(f)


def _emit(out: str, spec: dict) -> None:
    """The child: train the demo baseline as tools/train_net.py does and write its loss histories to `out`."""
    from lt_detectron.utils.numerics import pin_cpu_numerics

    pin_cpu_numerics()
    import torch
    from detectron2.utils.env import seed_all_rng

    from lt_detectron.data import generate_lt_shapes, register_lt_shapes
    from lt_detectron.engine import LTTrainer, build_cfg
    from lt_detectron.utils.numerics import numerics_info

    torch.set_num_threads(spec["threads"])
    root = os.path.join(os.path.dirname(out), "lt_shapes")
    sizes = spec["images"]
    sizes = {} if sizes is None else {"num_train_images": sizes[0], "num_val_images": sizes[1]}
    generate_lt_shapes(root, seed=0, **sizes)
    register_lt_shapes(root)
    opts = spec["opts"] + ["DATASETS.LT_SHAPES_DIR", root, "OUTPUT_DIR", os.path.join(os.path.dirname(out), "run")]
    cfg = build_cfg(DEMO_BASELINE, opts)
    cfg.freeze()
    seed_all_rng(cfg.SEED)  # what default_setup does in tools/train_net.py and tools/demo.py
    trainer = LTTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    histories = trainer.storage.histories()
    losses = {k: [v for v, _ in h.values()] for k, h in histories.items() if k.startswith("loss") or k == "total_loss"}
    result = {"losses": losses, "logged_total": histories["total_loss"].median(20), "numerics": numerics_info()}
    with open(out, "w") as f:
        json.dump(result, f)


def _recorded(kind: str):
    torch = pytest.importorskip("torch")
    version = torch.__version__.split("+")[0]
    value = RECORDED.get(version, {}).get(kind)
    if value in (None, {}):
        pytest.skip(f"no recorded {kind} losses for torch {version}; record them with `python {__file__}`")
    return value


def _first_difference(got: Dict[str, List[float]], want: Dict[str, List[float]]) -> str:
    """The earliest iteration whose loss terms differ, and those terms."""
    if set(got) != set(want):
        return f"loss terms {sorted(got)} now, {sorted(want)} recorded"
    for it in range(max(len(v) for v in (*got.values(), *want.values()))):
        diffs = [
            f"{name} {got[name][it]!r} now, {want[name][it]!r} recorded ({got[name][it] - want[name][it]:+.3g})"
            if it < min(len(got[name]), len(want[name]))
            else f"{name}: {len(got[name])} iterations now, {len(want[name])} recorded"
            for name in sorted(got)
            if got[name][it : it + 1] != want[name][it : it + 1]
        ]
        if diffs:
            return f"iteration {it}: " + "; ".join(diffs)
    return "none"


def test_demo_baseline_losses_equal_the_recorded_values():
    want = _recorded("quick")
    got = run_pinned(QUICK)
    assert got["losses"] == want, (
        "Training numerics moved: the demo baseline's loss terms under the pinned AVX2 kernels differ from the "
        f"recorded values (first difference: {_first_difference(got['losses'], want)}; CPU kernels: "
        f"{got['numerics']['isa']}, {got['numerics']['cpu_model']}). " + UPDATE_HINT
    )


@pytest.mark.skipif(not os.environ.get("LT_FULL_NUMERICS"), reason="opt-in: LT_FULL_NUMERICS=1 (~40 s, full data)")
def test_demo_twenty_iterations_reproduce_the_recorded_total_loss():
    want = _recorded("full")
    got = run_pinned(FULL)
    assert got["logged_total"] == want, (
        f"Training numerics moved: 20 iterations of the demo baseline (full lt_shapes, 2 threads, pinned AVX2 kernels) "
        f"log total_loss {got['logged_total']!r} at iteration 19, recorded {want!r} (CPU kernels: "
        f"{got['numerics']['isa']}, {got['numerics']['cpu_model']}). " + UPDATE_HINT
    )


# ------------------------------------------------------------------------------------------ the policy itself

ISA_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "LT_NATIVE_ISA")


def _can_pin() -> bool:
    from lt_detectron.utils import numerics

    return numerics._can_pin()


@pytest.fixture
def clean_isa_env(monkeypatch):
    for key in ISA_VARS:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.mark.skipif(not _can_pin(), reason="the pin applies to x86-64 CPUs with AVX2 and FMA")
def test_pin_sets_the_isa_and_warns_when_torch_is_loaded_already(clean_isa_env):
    from lt_detectron.utils.numerics import PINNED_ISA, numerics_info, pin_cpu_numerics

    pytest.importorskip("torch")  # loaded in this process: the pin reaches subprocesses only, and says so
    with pytest.warns(RuntimeWarning, match="before importing torch"):
        assert pin_cpu_numerics() == "pinned to AVX2"
    assert {k: os.environ[k] for k in PINNED_ISA} == PINNED_ISA
    info = numerics_info()
    assert info["isa"] == "pinned to AVX2" and "avx2" in info["cpu_flags"] and info["cpu_model"]


def test_opt_out_and_user_values_are_kept(clean_isa_env):
    from lt_detectron.utils.numerics import pin_cpu_numerics

    clean_isa_env.setenv("LT_NATIVE_ISA", "1")
    assert pin_cpu_numerics() == "native (LT_NATIVE_ISA=1)"
    assert "ATEN_CPU_CAPABILITY" not in os.environ
    clean_isa_env.delenv("LT_NATIVE_ISA")
    clean_isa_env.setenv("ATEN_CPU_CAPABILITY", "default")
    for key in ("ONEDNN_MAX_CPU_ISA", "MKL_CBWR"):
        clean_isa_env.setenv(key, "AVX2")
    status = pin_cpu_numerics()  # nothing left to set: no warning
    assert os.environ["ATEN_CPU_CAPABILITY"] == "default"
    assert status.startswith("custom") or not _can_pin(), status


@pytest.mark.skipif(not _can_pin(), reason="the pin applies to x86-64 CPUs with AVX2 and FMA")
def test_a_fresh_process_runs_pinned_kernels_and_passes_them_on():
    """An entry point pins before torch loads: ATen dispatches to AVX2 kernels, with no warning, and a subprocess
    it starts inherits the setting."""
    code = (
        "from lt_detectron.utils.numerics import pin_cpu_numerics\n"
        "pin_cpu_numerics()\n"
        "import subprocess, sys, torch\n"
        "print(torch.backends.cpu.get_cpu_capability())\n"
        "subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"ATEN_CPU_CAPABILITY\"])'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ISA_VARS}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["AVX2", "avx2"]
    assert "RuntimeWarning" not in proc.stderr


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--emit":
        _emit(sys.argv[2], json.loads(sys.argv[3]))
    else:
        full = "--full" in sys.argv[1:]
        result = run_pinned(FULL if full else QUICK)
        print(json.dumps(result["logged_total"] if full else result["losses"], indent=1))
