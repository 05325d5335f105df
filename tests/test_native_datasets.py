"""The native-layout dataset plugins (saadi_datasets) on small folders that mirror each published
layout and its quirks (tests/_native_layouts.py), and the dataset cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from _native_layouts import (
    ENDOSCAPES_CATEGORIES,
    LAPGYN4_CLASSES,
    make_autolaparo,
    make_cholecseg8k,
    make_coco,
    make_endoscapes,
    make_lapgyn4,
)
from PIL import Image

from saadi_core.errors import DataError
from saadi_core.registry import get_registry


def _load(kind: str, root: Path, **options):
    entry = get_registry().get("dataset", kind)
    return entry.load()(entry.build_options({"root": str(root), "image_size": 16, **options}))


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SAADI_DATA_CACHE", "off"
    )  # each test reads its files (the cache test turns it on)


def test_endoscapes_classes_official_splits_and_quirks(tmp_path: Path) -> None:
    make_endoscapes(tmp_path)
    data = _load("endoscapes", tmp_path)
    assert data.class_names == ["background", *ENDOSCAPES_CATEGORIES]
    assert (len(data.train), len(data.test)) == (
        6 + 2,
        3,
    )  # val joins train by default; unlisted jpgs ignored
    assert all(i.startswith(("train_seg/", "val_seg/")) for i in data.train.ids)
    assert data.meta["frames_without_labels"] == 1
    assert not data.train.masks[data.train.ids.index("train_seg/10_50.jpg")].any()
    assert set(np.unique(data.train.masks)) >= {0, 5, 6}  # background, gallbladder, tool
    held = _load("endoscapes", tmp_path, val_split="test")
    assert (len(held.train), len(held.test)) == (6, 5)
    only = _load("endoscapes", tmp_path, classes=["gallbladder", "tool"])
    assert (
        only.class_names == ["background", "gallbladder", "tool"]
        and int(only.train.masks.max()) <= 2
    )


def test_coco_painting_matches_rle_and_polygon_annotations_exactly(tmp_path: Path) -> None:
    from saadi_datasets.coco import paint, read_coco

    expected = make_endoscapes(tmp_path)["train"]
    path = tmp_path / "train_seg" / "annotation_coco.json"
    coco = read_coco(path)
    kinds = {
        type(a["segmentation"]).__name__
        + (
            type(a["segmentation"].get("counts")).__name__
            if isinstance(a["segmentation"], dict)
            else ""
        )
        for a in coco.dataset["annotations"]
    }
    assert kinds == {"list", "dictstr", "dictlist"}  # polygons, compressed and uncompressed RLE
    class_of = {k: k for k in range(1, 7)}
    for record, want in zip(sorted(coco.dataset["images"], key=lambda r: r["id"]), expected):
        np.testing.assert_array_equal(paint(coco, record, class_of, False, path), want)


def test_generic_coco_seeded_or_file_split(tmp_path: Path) -> None:
    make_coco(tmp_path)
    data = _load("coco", tmp_path)
    assert data.class_names == ["background", "gallbladder", "cystic_duct", "cystic_artery", "tool"]
    assert len(data.train) + len(data.test) == 8 and len(data.test) >= 1
    doc = json.loads((tmp_path / "annotations.json").read_text())
    test_doc = {
        **doc,
        "images": doc["images"][:3],
        "annotations": [a for a in doc["annotations"] if a["image_id"] <= 3],
    }
    (tmp_path / "test.json").write_text(json.dumps(test_doc))
    split = _load("coco", tmp_path, test_annotations="test.json")
    assert (len(split.train), len(split.test)) == (8, 3)


def test_autolaparo_grey_values_are_looked_up_and_split_by_clip(tmp_path: Path) -> None:
    make_autolaparo(tmp_path)
    data = _load("autolaparo", tmp_path, image_size=54, fit="crop")
    assert (
        data.class_names[0] == "background"
        and data.class_names[-1] == "uterus"
        and len(data.class_names) == 10
    )
    assert (len(data.train), len(data.test)) == (3 + 3 + 2, 2 + 2)
    assert data.meta["frames_per_official_split"] == {"train": 6, "val": 2, "test": 4}
    assert (
        int(data.train.masks.max()) <= 9 and 9 in data.train.masks
    )  # 180 -> uterus (id 9), not 180
    merged = _load("autolaparo", tmp_path, merge_parts=True, val_split="drop")
    assert merged.class_names == [
        "background",
        "grasping_forceps",
        "ligasure",
        "dissecting_forceps",
        "electric_hook",
        "uterus",
    ]
    assert (len(merged.train), len(merged.test)) == (6, 4)


def test_cholecseg8k_watershed_and_colour_masks_agree_and_videos_stay_whole(tmp_path: Path) -> None:
    expected = make_cholecseg8k(tmp_path)
    water = _load("cholecseg8k", tmp_path, image_size=48, fit="crop")
    colour = _load("cholecseg8k", tmp_path, image_size=48, fit="crop", mask="color")
    assert water.class_names[0] == "black_background" and len(water.class_names) == 13
    np.testing.assert_array_equal(water.train.masks, colour.train.masks)
    assert set(np.unique(water.train.masks)) <= set(np.unique(expected))  # 255 lines -> background
    train_videos = {i.split("/")[0] for i in water.train.ids}
    test_videos = {i.split("/")[0] for i in water.test.ids}
    assert train_videos.isdisjoint(test_videos) and test_videos
    named = _load("cholecseg8k", tmp_path, test_videos=["video12"])
    assert {i.split("/")[0] for i in named.test.ids} == {"video12"}


def test_lapgyn4_subset_from_any_root_level(tmp_path: Path) -> None:
    base = make_lapgyn4(tmp_path, per_class=3)
    for root in (tmp_path, base, base / "Anatomical_Structures"):
        data = _load("lapgyn4", root)
        assert data.task == "classification" and data.class_names == LAPGYN4_CLASSES
        assert len(data.train) + len(data.test) == 15
    assert _load("lapgyn4", tmp_path, subset="Instrument_Count").class_names == ["0", "1"]
    with pytest.raises(DataError, match="Surgical_Actions"):
        _load("lapgyn4", tmp_path, subset="Surgical_Actions")


def _error(fn) -> str:
    with pytest.raises(DataError) as excinfo:
        fn()
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_malformed_inputs_give_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    make_endoscapes(tmp_path / "e")
    ann = tmp_path / "e" / "test_seg" / "annotation_coco.json"
    doc = json.loads(ann.read_text())
    good = json.dumps(doc)
    ann.write_text(good[:-5])
    assert str(ann) in _error(lambda: _load("endoscapes", tmp_path / "e"))
    doc["annotations"][0]["segmentation"] = [[1, 2]]  # a polygon of one point
    ann.write_text(json.dumps(doc))
    assert str(ann) in _error(lambda: _load("endoscapes", tmp_path / "e"))
    doc = json.loads(good)
    seg = next(a for a in doc["annotations"] if isinstance(a["segmentation"], dict))
    seg["segmentation"]["size"] = [7, 7]
    ann.write_text(json.dumps(doc))
    assert "RLE of size" in _error(lambda: _load("endoscapes", tmp_path / "e"))
    ann.write_text(good)
    missing = tmp_path / "e" / "test_seg" / json.loads(good)["images"][0]["file_name"]
    missing.unlink()
    assert str(missing) in _error(lambda: _load("endoscapes", tmp_path / "e"))

    make_autolaparo(tmp_path / "a", clips={1: 2, 228: 1})
    bad = tmp_path / "a" / "masks" / "001025.png"
    Image.fromarray(np.full((54, 96, 3), 30, np.uint8)).save(bad)
    message = _error(lambda: _load("autolaparo", tmp_path / "a"))
    assert str(bad) in message and "value 30" in message
    Image.fromarray(np.zeros((54, 96, 3), np.uint8)).save(tmp_path / "a" / "imgs" / "clip1.jpg")
    assert "clip1.jpg" in _error(lambda: _load("autolaparo", tmp_path / "a"))

    make_cholecseg8k(tmp_path / "c", videos={"video01": 1, "video02": 1})
    stray = next((tmp_path / "c" / "video02").rglob("*_watershed_mask.png"))
    arr = np.asarray(Image.open(stray)).copy()
    arr[5, 5] = 36
    Image.fromarray(arr).save(stray)
    assert str(stray) in _error(lambda: _load("cholecseg8k", tmp_path / "c"))
    assert len(_load("cholecseg8k", tmp_path / "c", unknown_to_background=True).test) == 1
    next((tmp_path / "c" / "video01").rglob("*_color_mask.png")).unlink()
    assert "_color_mask.png" in _error(lambda: _load("cholecseg8k", tmp_path / "c", mask="color"))


def test_data_check_reports_counts_per_class_and_split(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from saadi_core.cli import main

    make_endoscapes(tmp_path)
    main(["data", "check", "--dataset", "endoscapes", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert summary["dataset"] == "endoscapes" and summary["classes"][1:] == ENDOSCAPES_CATEGORIES
    assert summary["train"]["images"] == 8 and summary["test"]["images"] == 3
    assert set(summary["train"]["images_per_class"]) == set(summary["classes"])
    assert summary["frames_without_labels"] == 1 and "official" in summary["split"]
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", "--dataset", "autolaparo", str(tmp_path)])
    assert exit_info.value.code == 2 and "imgs" in capsys.readouterr().err


def test_cache_reuses_a_load_until_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAADI_DATA_CACHE", str(tmp_path / "cache"))
    make_autolaparo(tmp_path / "a", clips={1: 2, 228: 1})
    first = _load("autolaparo", tmp_path / "a")
    again = _load("autolaparo", tmp_path / "a")
    assert (first.meta["cache"], again.meta["cache"]) == ("stored", "hit")
    np.testing.assert_array_equal(first.train.images, again.train.images)
    np.testing.assert_array_equal(first.test.masks, again.test.masks)
    assert again.train.ids == first.train.ids and again.class_names == first.class_names
    assert (
        _load("autolaparo", tmp_path / "a", image_size=24).meta["cache"] == "stored"
    )  # another size
    mask = tmp_path / "a" / "masks" / "228025.png"
    Image.fromarray(np.full((54, 96, 3), 180, np.uint8)).save(mask)
    os.utime(mask, ns=(1, 1))
    changed = _load("autolaparo", tmp_path / "a")
    assert changed.meta["cache"] == "stored" and (changed.test.masks == 9).all()
    monkeypatch.setenv(
        "SAADI_DATA_CACHE", str(tmp_path / "a" / ".saadi-cache")
    )  # a cache inside the dataset
    assert [_load("autolaparo", tmp_path / "a").meta["cache"] for _ in range(2)] == [
        "stored",
        "hit",
    ]
