"""Each method's defaults live in its record: both config trees and the constructors read them, and a detection
default that differs is listed, with its reason, in lt_detectron.config.DETECTION_DEVIATIONS."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

pytest.importorskip("detectron2")
from detectron2.config import get_cfg  # noqa: E402

from lt_detectron import losses as L  # noqa: E402
from lt_detectron.classification.config import get_cfg as get_cls_cfg  # noqa: E402
from lt_detectron.classification.m2m import M2M_DEFAULTS  # noqa: E402
from lt_detectron.config import DETECTION_DEVIATIONS, add_lt_config  # noqa: E402
from lt_detectron.meta.engine import META_DEFAULTS  # noqa: E402
from lt_detectron.modeling import LDABoxPredictor  # noqa: E402
from lt_detectron.utils.records import record_from_config  # noqa: E402

# Config key of a record field where it is not the field's name in upper case.
KEYS = {"lam": "LAMBDA", "start": "START_ITER", "drw_start_fraction": "-"}


def _differences(record, node, prefix: str) -> dict:
    out = {}
    for field in dataclasses.fields(record):
        key = KEYS.get(field.name, field.name.upper())
        if key in node and node[key] != getattr(record, field.name):
            out[f"{prefix}.{field.name.upper()}"] = (node[key], getattr(record, field.name))
    return out


def test_detection_defaults_are_the_records_but_for_the_listed_deviations():
    cfg = add_lt_config(get_cfg())
    lt = cfg.MODEL.LT
    records = {
        "MODEL.LT.CB": (L.CB_DEFAULTS, lt.CB),
        "MODEL.LT.FOCAL": (L.FOCAL_DEFAULTS, lt.FOCAL),
        "MODEL.LT.LDAM": (L.LDAM_DEFAULTS, lt.LDAM),
        "MODEL.LT.LADE": (L.LADE_DEFAULTS, lt.LADE),
        "MODEL.LT.LDA": (L.LDA_LVIS_DEFAULTS, lt.LDA),
        "MODEL.LT.SEESAW": (L.SEESAW_DEFAULTS, lt.SEESAW),
        "MODEL.LT.EQLV2": (L.EQLV2_DEFAULTS, lt.EQLV2),
        "MODEL.LT.META": (META_DEFAULTS, lt.META),
    }
    found = {}
    for prefix, (record, node) in records.items():
        found.update(_differences(record, node, prefix))
    assert set(found) == set(DETECTION_DEVIATIONS), found
    # Every LDA field has a detection key, and the record built from the defaults is the record itself.
    assert all(f.name.upper() in lt.LDA for f in dataclasses.fields(L.LDA_LVIS_DEFAULTS))
    assert record_from_config(L.LDA_LVIS_DEFAULTS, lt.LDA) == L.LDA_LVIS_DEFAULTS


def test_classification_defaults_are_the_records():
    method = get_cls_cfg().METHOD
    for record, node in [
        (L.LDAM_DEFAULTS, method.LDAM),
        (L.LADE_DEFAULTS, method.LADE),
        (L.LDA_DEFAULTS, method.LDA),
        (M2M_DEFAULTS, method.M2M),
    ]:
        assert _differences(record, node, "METHOD") == {}
    assert record_from_config(L.LDA_DEFAULTS, method.LDA) == L.LDA_DEFAULTS


def test_constructors_default_to_the_records():
    signature = inspect.signature(LDABoxPredictor.__init__)
    assert signature.parameters["lda"].default is L.LDA_LVIS_DEFAULTS
    loss = inspect.signature(L.LDALoss.__init__).parameters
    for name in ("gamma", "lambda_u", "lambda_b", "lambda_d", "margin", "pair_weights", "alpha_ramp", "fixed_alpha"):
        assert loss[name].default == getattr(L.LDA_DEFAULTS, name), name
    balancer = inspect.signature(L.RiskBalancer.__init__).parameters
    assert balancer["alpha_ramp"].default == L.LDA_DEFAULTS.alpha_ramp
    assert balancer["gamma"].default == L.LDA_DEFAULTS.gamma


def test_record_from_config_casts_to_the_fields_type():
    node = {"GAMMA": 1, "WINDOW": 0, "PROJ_HEAD": "mlp", "UNKNOWN": 3}
    record = record_from_config(L.LDA_DEFAULTS, node)
    assert record.gamma == 1.0 and isinstance(record.gamma, float) and record.window == 0
    assert record.proj_head == "mlp" and record.lambda_b == L.LDA_DEFAULTS.lambda_b
