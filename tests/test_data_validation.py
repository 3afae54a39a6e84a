"""Bad annotation files fail early, naming the file, the field and the fix."""

import json

import pytest
from detectron2.data import DatasetCatalog

from lt_detectron.data import AnnotationError, generate_lt_shapes, register_lt_shapes, validate_lvis_json


def _valid() -> dict:
    cat = lambda i, f: {"id": i, "name": f"c{i}", "frequency": f, "synonyms": [], "def": "", "synset": ""}
    img = lambda i: {
        "id": i,
        "width": 64,
        "height": 48,
        "coco_url": f"http://x/train2017/{i:012d}.jpg",
        "neg_category_ids": [2],
        "not_exhaustive_category_ids": [],
    }
    ann = lambda i, image_id, cat_id: {
        "id": i,
        "image_id": image_id,
        "category_id": cat_id,
        "bbox": [10.0, 5.0, 20.0, 10.0],
        "area": 200.0,
        "segmentation": [[10.0, 5.0, 30.0, 5.0, 30.0, 15.0, 10.0, 15.0]],
    }
    return {
        "images": [img(1), img(2)],
        "annotations": [ann(1, 1, 1), ann(2, 2, 1), ann(3, 2, 2)],
        "categories": [cat(1, "c"), cat(2, "r")],
    }


def _write(tmp_path, data, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_a_valid_file_passes(tmp_path):
    validate_lvis_json(_write(tmp_path, _valid(), "good.json"))


def _broken(mutate):
    data = _valid()
    mutate(data)
    return data


CASES = {
    "missing field": (lambda d: d["annotations"][1].pop("bbox"), "annotations[1].bbox", "missing"),
    "unknown category id": (
        lambda d: d["annotations"][2].update(category_id=7),
        "annotations[2].category_id",
        "unknown category id 7",
    ),
    "box outside the image": (
        lambda d: d["annotations"][0].update(bbox=[50.0, 5.0, 20.0, 10.0]),
        "annotations[0].bbox",
        "outside",
    ),
    "empty split": (lambda d: d.update(annotations=[]), "annotations", "empty"),
    "no images": (lambda d: d.update(images=[]), "images", "empty"),
    "non-contiguous category ids": (lambda d: d["categories"][1].update(id=5), "categories[*].id", "contiguous"),
    "bad frequency": (lambda d: d["categories"][0].update(frequency="x"), "categories[0].frequency", "'r', 'c' or 'f'"),
    "unknown image id": (
        lambda d: d["annotations"][0].update(image_id=99),
        "annotations[0].image_id",
        "unknown image id",
    ),
    "duplicate annotation id": (lambda d: d["annotations"][1].update(id=1), "annotations[1].id", "duplicate"),
    "short polygon": (
        lambda d: d["annotations"][0].update(segmentation=[[1.0, 2.0, 3.0, 4.0]]),
        "annotations[0].segmentation[0]",
        ">= 6",
    ),
    "polygon outside": (
        lambda d: d["annotations"][0]["segmentation"][0].__setitem__(2, 90.0),
        "annotations[0].segmentation[0]",
        "outside",
    ),
    "missing coco_url": (lambda d: d["images"][0].pop("coco_url"), "images[0].coco_url", "missing"),
    "missing negatives": (lambda d: d["images"][1].pop("neg_category_ids"), "images[1].neg_category_ids", "missing"),
    "missing top-level list": (lambda d: d.pop("categories"), "categories", "missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_field_and_fix(tmp_path, case):
    mutate, field, problem = CASES[case]
    path = _write(tmp_path, _broken(mutate))
    with pytest.raises(AnnotationError) as info:
        validate_lvis_json(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field == field and problem in err.problem
    message = str(err)
    assert str(path) in message and field in message and "Fix:" in message and err.fix in message


def test_unreadable_files(tmp_path):
    with pytest.raises(AnnotationError, match="does not exist"):
        validate_lvis_json(tmp_path / "missing.json")
    (tmp_path / "trunc.json").write_text('{"images": [')
    with pytest.raises(AnnotationError, match="not valid JSON"):
        validate_lvis_json(tmp_path / "trunc.json")


def test_image_info_files_may_have_no_annotations(tmp_path):
    validate_lvis_json(_write(tmp_path, _broken(lambda d: d.update(annotations=[]))), require_annotations=False)


def test_a_corrupted_lt_shapes_json_fails_when_the_dataset_is_loaded(tmp_path):
    root = tmp_path / "lt_shapes"
    generate_lt_shapes(root, seed=0, num_train_images=12, num_val_images=8)
    data = json.loads((root / "lt_shapes_train.json").read_text())
    data["annotations"][3]["category_id"] = 999
    (root / "lt_shapes_train.json").write_text(json.dumps(data))
    try:
        register_lt_shapes(root)
        with pytest.raises(AnnotationError, match=r"lt_shapes_train\.json: annotations\[3\]\.category_id"):
            DatasetCatalog.get("lt_shapes_train")
    finally:
        register_lt_shapes()
