"""lt_shapes generator: LVIS groups of the default layout, determinism, lvis-api/LVISEval compatibility, exact masks,
atomic writing."""

import filecmp
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from lvis import LVIS, LVISEval, LVISResults
from pycocotools import mask as mask_utils

from lt_detectron.data import frequency_groups, generate_lt_shapes, lt_shapes
from lt_detectron.data.lt_shapes import (
    INFO_JSON,
    TRAIN_JSON,
    VAL_JSON,
    LTShapesSpec,
    category_names,
    is_complete,
    plan_lt_shapes,
)

SMALL = dict(num_train_images=24, num_val_images=8)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("lt_shapes") / "small"
    summary = generate_lt_shapes(out, seed=3, **SMALL)
    return out, summary


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_default_layout_has_all_three_lvis_groups():
    """The default train split (planned, not rendered) is long-tailed with a third of the classes in each group."""
    plan = plan_lt_shapes(LTShapesSpec())
    image_counts = np.zeros(len(category_names()), dtype=int)
    for classes in plan["train"]:
        image_counts[sorted(set(classes))] += 1
    np.testing.assert_array_equal(image_counts, plan["train_image_counts"])
    groups = Counter(frequency_groups(image_counts))
    assert groups == {"r": 10, "c": 10, "f": 10}
    assert image_counts.min() >= 1 and image_counts.max() > 100
    # Every image holds 2..6 objects; the val split is class-balanced.
    assert {len(objs) for objs in plan["train"] + plan["val"]} <= set(range(2, 7))
    val_counts = Counter(c for classes in plan["val"] for c in set(classes))
    assert len(val_counts) == len(category_names()) and len(set(val_counts.values())) == 1


def test_generation_is_deterministic(small_set, tmp_path):
    out, _ = small_set
    again = tmp_path / "again"
    generate_lt_shapes(again, seed=3, **SMALL)
    for name in (TRAIN_JSON, VAL_JSON, INFO_JSON):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    first_images = sorted((out / "images" / "train").iterdir())[:3]
    assert all(filecmp.cmp(p, again / "images" / "train" / p.name, shallow=False) for p in first_images)

    other = tmp_path / "other_seed"
    generate_lt_shapes(other, seed=4, **SMALL)
    assert (out / TRAIN_JSON).read_bytes() != (other / TRAIN_JSON).read_bytes()


def test_lvis_api_loads_both_splits_with_consistent_categories(small_set):
    out, summary = small_set
    train, val = LVIS(str(out / TRAIN_JSON)), LVIS(str(out / VAL_JSON))
    assert len(train.imgs) == SMALL["num_train_images"] and len(val.imgs) == SMALL["num_val_images"]
    assert not set(train.imgs) & set(val.imgs), "image ids must be unique across splits"
    assert train.dataset["categories"] == val.dataset["categories"]
    # Stored category stats are the train split's, computed like LVIS.
    image_count = Counter(c for c, imgs in train.cat_img_map.items() for _ in set(imgs))
    instance_count = Counter(a["category_id"] for a in train.anns.values())
    for cat in train.dataset["categories"]:
        assert cat["image_count"] == image_count.get(cat["id"], 0)
        assert cat["instance_count"] == instance_count.get(cat["id"], 0)
        assert cat["frequency"] == frequency_groups([cat["image_count"]])[0]
    for img in list(train.imgs.values()) + list(val.imgs.values()):
        present = {a["category_id"] for a in (train if img["id"] in train.imgs else val).img_ann_map[img["id"]]}
        assert 2 <= len((train if img["id"] in train.imgs else val).img_ann_map[img["id"]]) <= 6
        assert img["coco_url"].endswith(img["file_name"]) and (out / "images" / img["file_name"]).is_file()
        # Exhaustive annotation: the negatives are exactly the absent classes.
        assert set(img["neg_category_ids"]) == set(range(1, len(category_names()) + 1)) - present
        assert img["not_exhaustive_category_ids"] == []
    assert summary["train"]["instances"] == len(train.anns)


def test_polygons_rasterize_to_the_box_and_area_inside_the_image(small_set):
    out, _ = small_set
    data = _load(out / VAL_JSON)
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    for ann in data["annotations"]:
        h, w = sizes[ann["image_id"]]
        coords = np.concatenate([np.asarray(p) for p in ann["segmentation"]])
        assert coords.min() >= 0 and coords[0::2].max() <= w and coords[1::2].max() <= h
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w)))
        ys, xs = np.nonzero(mask)
        x, y, bw, bh = ann["bbox"]
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + bw, y + bh)
        assert mask.sum() == ann["area"] > 0


def test_lvis_eval_runs_and_scores_ground_truth_as_perfect(small_set):
    """LVISEval runs on the val json; the ground truth submitted as detections is a perfect result, and dropping
    half of it lowers AP (so the evaluation really looks at the detections)."""
    out, _ = small_set
    gt = LVIS(str(out / VAL_JSON))
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt.anns.values()
    ]

    def bbox_ap(results):
        ev = LVISEval(gt, LVISResults(gt, results), "bbox")
        ev.run()
        return ev.get_results()["AP"]

    assert bbox_ap(dets) == pytest.approx(1.0)
    assert bbox_ap(dets[::2]) < 0.9


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lt_shapes, "_categories", crash)  # after all images are rendered
    with pytest.raises(KeyboardInterrupt):
        generate_lt_shapes(tmp_path / "ds", seed=0, **SMALL)
    assert not is_complete(tmp_path / "ds")
    assert list(tmp_path.iterdir()) == [], "temporary folder must be cleaned up"


def test_refuses_to_overwrite_unless_asked(small_set, tmp_path):
    out, _ = small_set
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_lt_shapes(out, seed=3, **SMALL)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an lt_shapes dataset this project wrote"):
        generate_lt_shapes(foreign, seed=0, **SMALL)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_users_copy_without_the_marker_is_never_regenerated(small_set, tmp_path):
    """A folder holding an edited lt_shapes_train.json, the val json and images, but no lt_shapes_info.json (the
    marker the generator writes last): ensure_lt_shapes refuses instead of regenerating over it."""
    import hashlib
    import shutil

    from lt_detectron.data import ensure_lt_shapes

    out, _ = small_set
    copy = tmp_path / "edited"
    shutil.copytree(out, copy, symlinks=True)
    (copy / lt_shapes.INFO_JSON).unlink()
    train = copy / lt_shapes.TRAIN_JSON
    train.write_text(train.read_text().replace('"iscrowd":0', '"iscrowd":0 '))  # the user's edit

    def digest() -> dict:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in copy.iterdir() if p.is_file()}

    before = digest()
    with pytest.raises(FileExistsError, match=r"holds files \(images, lt_shapes_train.json, lt_shapes_val.json\)"):
        ensure_lt_shapes(copy)
    assert digest() == before and (copy / "images").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["edited"]  # no temporary folder left


def test_cli_writes_the_documented_layout(tmp_path, capsys):
    lt_shapes.main(["--out", str(tmp_path / "cli"), "--seed", "1", "--num-train-images", "12", "--num-val-images", "8"])
    assert json.loads(capsys.readouterr().out)["train"]["images"] == 12
    assert is_complete(tmp_path / "cli")
    assert sorted(p.name for p in (tmp_path / "cli" / "images").iterdir()) == ["train", "val"]
