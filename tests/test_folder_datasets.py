"""Folder layouts a user brings: loading (class-per-folder, images + masks with index, palette and
colour masks, split files, stratified split), `check_path`, and every validation failure, each a
one-line DataError naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saadi_core.data.check import check_path, detect_layout
from saadi_core.data.folders import load_folder_cls, load_folder_seg
from saadi_core.data.options import FolderClsOptions, FolderSegOptions
from saadi_core.errors import ConfigError, DataError, SaadiError

COLOURS = {"background": (0, 0, 0), "tool": (255, 0, 0), "duct": (0, 255, 0)}


def _image(path: Path, size: tuple[int, int] = (40, 30), value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _label_map(size: tuple[int, int] = (40, 30), classes: int = 3) -> np.ndarray:
    """Vertical stripes: class k in the k-th third of the width (every class present)."""
    w, h = size
    row = np.minimum(np.arange(w) * classes // w, classes - 1)
    return np.broadcast_to(row, (h, w)).astype(np.uint8)


def make_cls_tree(root: Path, counts: dict[str, int] | None = None, ext: str = ".png") -> Path:
    counts = counts or {"liver": 5, "colon": 4, "uterus": 3}
    for k, (name, n) in enumerate(counts.items()):
        for i in range(n):
            _image(root / name / f"img{i:02d}{ext}", value=10 * k + i)
    return root


def make_seg_tree(
    root: Path, n: int = 6, form: str = "index", mode: str = "L", size: tuple[int, int] = (40, 30)
) -> Path:
    """images/ + masks/ with n images; masks as mode L, P (palette) or RGB; classes.yaml in the
    index or colour form."""
    names = list(COLOURS)
    if form == "index":
        (root / "classes.yaml").parent.mkdir(parents=True, exist_ok=True)
        (root / "classes.yaml").write_text(
            "\n".join(f"{k}: {name}" for k, name in enumerate(names)) + "\n"
        )
    else:
        (root / "classes.yaml").parent.mkdir(parents=True, exist_ok=True)
        (root / "classes.yaml").write_text(
            "\n".join(f"{name}: [{r}, {g}, {b}]" for name, (r, g, b) in COLOURS.items()) + "\n"
        )
    for i in range(n):
        _image(root / "images" / f"case{i}.png", size=size, value=i)
        labels = _label_map(size)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        if mode == "L":
            mask = Image.fromarray(labels, mode="L")
        elif mode == "P":
            mask = Image.fromarray(labels, mode="P")
            mask.putpalette([c for name in names for c in COLOURS[name]])
        else:
            mask = Image.fromarray(np.array([COLOURS[n] for n in names], dtype=np.uint8)[labels])
        mask.save(root / "masks" / f"case{i}.png")
    return root


def _error(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, SaadiError)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------- loading


def test_class_per_folder_with_stratified_split(tmp_path: Path) -> None:
    root = make_cls_tree(tmp_path / "ds")
    ds = load_folder_cls(FolderClsOptions(root=root, image_size=32, test_fraction=0.25, seed=1))
    assert ds.task == "classification" and ds.class_names == ["colon", "liver", "uterus"]
    assert ds.train.images.shape[1:] == (32, 32, 3) and ds.train.images.dtype == np.uint8
    assert len(ds.train) + len(ds.test) == 12
    assert set(ds.test.labels.tolist()) == {0, 1, 2}  # every class is held out once or more
    assert set(ds.train.labels.tolist()) == {0, 1, 2}
    assert all(i.split("/")[0] in ds.class_names for i in ds.train.ids)
    assert not set(ds.train.ids) & set(ds.test.ids)
    again = load_folder_cls(FolderClsOptions(root=root, image_size=32, test_fraction=0.25, seed=1))
    assert again.test.ids == ds.test.ids
    other = load_folder_cls(FolderClsOptions(root=root, image_size=32, test_fraction=0.25, seed=2))
    assert other.test.ids != ds.test.ids
    assert ds.meta["original_sizes"] == {"40x30": 12} and "stratified" in ds.meta["split"]


def test_crop_keeps_aspect_and_stretch_does_not(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for name in ("a", "b"):
        for i in range(2):
            (root / name).mkdir(parents=True, exist_ok=True)
            img = np.zeros((20, 60, 3), np.uint8)
            img[:, :20] = 255  # white left third: cropped away by a centre crop
            Image.fromarray(img).save(root / name / f"{i}.png")
    cropped = load_folder_cls(FolderClsOptions(root=root, image_size=16, fit="crop"))
    stretched = load_folder_cls(FolderClsOptions(root=root, image_size=16, fit="stretch"))
    assert cropped.train.images.max() == 0
    assert stretched.train.images[:, :, :4].min() > 200


def test_class_per_folder_with_csv_and_json_split(tmp_path: Path) -> None:
    root = make_cls_tree(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "split.csv").write_text(
        "file,split\na/img00.png,train\na/img01,test\nb/img00.png,train\n./b/img01.png,test\n"
    )
    ds = load_folder_cls(FolderClsOptions(root=root, image_size=16))
    assert ds.train.ids == ["a/img00.png", "b/img00.png"] and ds.test.ids == [
        "a/img01.png",
        "b/img01.png",
    ]
    assert "split.csv" in ds.meta["split"]
    (root / "split.csv").unlink()
    (root / "my_split.json").write_text(
        json.dumps(
            {"train": ["a/img00.png", "a/img01.png", "b/img00.png"], "test": ["b/img01.png"]}
        )
    )
    ds = load_folder_cls(
        FolderClsOptions(root=root, image_size=16, split_file=Path("my_split.json"))
    )
    assert len(ds.train) == 3 and ds.test.ids == ["b/img01.png"]


@pytest.mark.parametrize(
    ("form", "mode"), [("index", "L"), ("index", "P"), ("colour", "P"), ("colour", "RGB")]
)
def test_images_and_masks(tmp_path: Path, form: str, mode: str) -> None:
    root = make_seg_tree(tmp_path / "seg", n=6, form=form, mode=mode)
    ds = load_folder_seg(
        FolderSegOptions(root=root, image_size=30, fit="stretch", test_fraction=0.34)
    )
    assert ds.task == "segmentation" and ds.class_names == list(COLOURS)
    assert ds.train.masks.dtype == np.int64 and ds.train.masks.shape[1:] == (30, 30)
    assert len(ds.train) == 4 and len(ds.test) == 2
    # nearest-neighbour resizing keeps the stripes: class k on the k-th third of the width
    mask = ds.train.masks[0]
    assert set(np.unique(mask)) == {0, 1, 2}
    assert (mask[:, :8] == 0).all() and (mask[:, 12:18] == 1).all() and (mask[:, 22:] == 2).all()
    assert ds.meta["mask_format"] == form and ds.train.ids[0].startswith("images/")


def test_index_map_with_sparse_values_and_list_form(tmp_path: Path) -> None:
    root = tmp_path / "seg"
    _image(root / "images" / "a.png")
    _image(root / "images" / "b.png", value=3)
    for stem in ("a", "b"):
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray((_label_map(classes=2) * 255).astype(np.uint8), mode="L").save(
            root / "masks" / f"{stem}.png"
        )
    (root / "classes.yaml").write_text("0: background\n255: tool\n")
    ds = load_folder_seg(FolderSegOptions(root=root, image_size=20))
    assert set(np.unique(ds.train.masks)) | set(np.unique(ds.test.masks)) == {0, 1}
    (root / "classes.yaml").write_text("[background, tool]\n")
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root, image_size=20))
    _error(excinfo, "value 255", str(root / "masks"))


def test_seg_split_file_by_stem_and_rare_class_stratification(tmp_path: Path) -> None:
    root = make_seg_tree(tmp_path / "seg", n=4)
    (root / "split.json").write_text(
        json.dumps({"train": ["case0", "case1.png", "images/case2.png"], "test": ["case3"]})
    )
    ds = load_folder_seg(FolderSegOptions(root=root, image_size=16))
    assert ds.test.ids == ["images/case3.png"] and len(ds.train) == 3


def test_check_path_summaries(tmp_path: Path) -> None:
    cls_root = make_cls_tree(tmp_path / "cls")
    summary = check_path(cls_root)
    assert summary["layout"] == "class-per-folder" and summary["task"] == "classification"
    assert summary["images"] == 12 and summary["classes"] == ["colon", "liver", "uterus"]
    per_class = {
        c: summary["train"]["images_per_class"][c] + summary["test"]["images_per_class"][c]
        for c in summary["classes"]
    }
    assert per_class == {"liver": 5, "colon": 4, "uterus": 3}
    assert summary["original_sizes"] == {"40x30": 12}
    json.dumps(summary)  # the CLI prints it as JSON
    seg_root = make_seg_tree(tmp_path / "seg", form="colour", mode="RGB")
    summary = check_path(seg_root)
    assert summary["layout"] == "images+masks" and summary["mask_format"] == "colour"
    assert summary["train"]["images_per_class"]["tool"] == summary["train"]["images"]
    assert abs(sum(summary["train"]["pixel_share"].values()) - 1.0) < 1e-3
    json.dumps(summary)
    assert detect_layout(cls_root) == "cls" and detect_layout(seg_root) == "seg"
    assert check_path(seg_root, layout="segmentation", test_fraction=0.5)["test"]["images"] == 3
    assert check_path(cls_root, layout="cls")["task"] == "classification"
    with pytest.raises(ConfigError, match="layout"):
        check_path(cls_root, layout="detection")


# --------------------------------------------------------------------------- failures


def test_missing_root_and_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_folder_cls(FolderClsOptions(root=tmp_path / "nope"))
    _error(excinfo, "not found", str(tmp_path / "nope"))
    with pytest.raises(DataError) as excinfo:
        check_path(tmp_path / "nope")
    _error(excinfo, str(tmp_path / "nope"))
    root = make_seg_tree(tmp_path / "seg")
    for sub in (root / "masks").iterdir():
        sub.unlink()
    (root / "masks").rmdir()
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, "mask folder", str(root / "masks"))
    with pytest.raises(DataError) as excinfo:
        check_path(root)
    _error(excinfo, str(root / "masks"))
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root, images_dir="imgs"))
    _error(excinfo, "image folder", str(root / "imgs"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as excinfo:
        load_folder_cls(FolderClsOptions(root=tmp_path / "empty"))
    _error(excinfo, "no class folders", str(tmp_path / "empty"))
    with pytest.raises(DataError) as excinfo:
        check_path(tmp_path / "empty")
    _error(excinfo, str(tmp_path / "empty"))


def test_no_images(tmp_path: Path) -> None:
    root = make_cls_tree(tmp_path / "cls", {"a": 2, "b": 2})
    (root / "empty_class").mkdir()
    (root / "empty_class" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as excinfo:
        load_folder_cls(FolderClsOptions(root=root))
    _error(excinfo, "no images", str(root / "empty_class"))
    seg = tmp_path / "seg"
    (seg / "images").mkdir(parents=True)
    (seg / "masks").mkdir()
    (seg / "classes.yaml").write_text("0: background\n1: tool\n")
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=seg))
    _error(excinfo, "no images", str(seg / "images"))


@pytest.mark.parametrize("layout", ["cls", "seg"])
def test_corrupt_image(tmp_path: Path, layout: str) -> None:
    if layout == "cls":
        root = make_cls_tree(tmp_path / "ds", {"a": 2, "b": 2})
        bad = root / "b" / "img01.png"
    else:
        root = make_seg_tree(tmp_path / "ds")
        bad = root / "images" / "case3.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DataError) as excinfo:
        check_path(root)
    _error(excinfo, "cannot read image", str(bad))


def test_corrupt_mask(tmp_path: Path) -> None:
    root = make_seg_tree(tmp_path / "ds")
    bad = root / "masks" / "case2.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, "cannot read mask", str(bad))


def test_mask_missing_for_an_image(tmp_path: Path) -> None:
    root = make_seg_tree(tmp_path / "ds")
    (root / "masks" / "case4.png").unlink()
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, "no mask", str(root / "images" / "case4.png"))


def test_mask_size_differs_from_image(tmp_path: Path) -> None:
    root = make_seg_tree(tmp_path / "ds")
    Image.fromarray(_label_map((20, 30))).save(root / "masks" / "case1.png")
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, str(root / "masks" / "case1.png"), "20x30", "40x30")


def test_mask_value_or_colour_not_in_class_map(tmp_path: Path) -> None:
    root = make_seg_tree(tmp_path / "idx")
    labels = _label_map()
    labels[0, 0] = 7
    Image.fromarray(labels).save(root / "masks" / "case0.png")
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, str(root / "masks" / "case0.png"), "value 7", "classes.yaml")

    root = make_seg_tree(tmp_path / "rgb", form="colour", mode="RGB")
    rgb = np.array(Image.open(root / "masks" / "case5.png"))
    rgb[3, 3] = (10, 20, 30)
    Image.fromarray(rgb).save(root / "masks" / "case5.png")
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, str(root / "masks" / "case5.png"), "colour [10, 20, 30]")

    # a colour mask with a class map that names values
    root = make_seg_tree(tmp_path / "mixed", form="index", mode="RGB")
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, str(root / "masks" / "case0.png"), "colour image")


def test_class_never_present_or_without_images(tmp_path: Path) -> None:
    root = make_seg_tree(tmp_path / "seg")
    (root / "classes.yaml").write_text("0: background\n1: tool\n2: duct\n3: artery\n")
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, "'artery'", "never appears", str(root / "classes.yaml"))

    cls_root = make_cls_tree(tmp_path / "cls", {"a": 3, "b": 3})
    (cls_root / "split.csv").write_text(
        "file,split\n"
        + "".join(f"a/img0{i}.png,train\n" for i in range(3))
        + "".join(f"b/img0{i}.png,test\n" for i in range(3))
    )
    with pytest.raises(DataError) as excinfo:
        load_folder_cls(FolderClsOptions(root=cls_root))
    _error(excinfo, "class 'b'", "no training images", "split.csv")


def test_class_map_problems(tmp_path: Path) -> None:
    root = make_seg_tree(tmp_path / "seg")
    (root / "classes.yaml").unlink()
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, "class map not found", str(root / "classes.yaml"))
    for text in (
        "background: 0\ntool: red\n",
        "0: [0, 0]\n",
        "{unclosed: [\n",
        "just one\n",
        "a: [0, 0, 0]\nb: [0, 0, 0]\n",
    ):
        (root / "classes.yaml").write_text(text)
        with pytest.raises(DataError) as excinfo:
            load_folder_seg(FolderSegOptions(root=root))
        _error(excinfo, str(root / "classes.yaml"))


def test_split_file_problems(tmp_path: Path) -> None:
    root = make_cls_tree(tmp_path / "ds", {"a": 2, "b": 2})
    files = ["a/img00.png", "a/img01.png", "b/img00.png", "b/img01.png"]
    split = root / "split.csv"
    cases = {
        "file,split\n"
        + "".join(f"{f},train\n" for f in files)
        + "a/ghost.png,test\n": "'a/ghost.png' is not an image",
        "file,split\n"
        + "".join(
            f"{f},{'test' if i % 2 else 'train'}\n" for i, f in enumerate(files[:3])
        ): "no split for 1 image(s), e.g. b/img01.png",
        "name,part\nx,y\n": "needs columns 'file' and 'split'",
        "file,split\n"
        + "".join(
            f"{f},{'val' if i == 1 else 'train'}\n" for i, f in enumerate(files)
        ): "line 3: split 'val'",
        "file,split\n" + "".join(f"{f},train\n" for f in files): "the test split is empty",
        "file,split\na/img00.png,train\na/img00.png,test\n": "listed in both",
    }
    for text, needle in cases.items():
        split.write_text(text)
        with pytest.raises(DataError) as excinfo:
            load_folder_cls(FolderClsOptions(root=root))
        _error(excinfo, str(split), needle)
    split.unlink()
    (root / "split.json").write_text('{"train": ["a/img00.png"], "test": "b/img00.png"}')
    with pytest.raises(DataError) as excinfo:
        load_folder_cls(FolderClsOptions(root=root))
    _error(excinfo, str(root / "split.json"))
    (root / "split.csv").write_text("file,split\n")
    with pytest.raises(DataError) as excinfo:
        load_folder_cls(FolderClsOptions(root=root))
    _error(excinfo, str(root / "split.csv"), str(root / "split.json"))
    with pytest.raises(DataError) as excinfo:
        load_folder_cls(FolderClsOptions(root=root, split_file=Path("missing.csv")))
    _error(excinfo, "split file not found", str(root / "missing.csv"))


def test_ambiguous_stems(tmp_path: Path) -> None:
    root = make_seg_tree(tmp_path / "seg")
    _image(root / "images" / "case0.jpg")
    with pytest.raises(DataError) as excinfo:
        load_folder_seg(FolderSegOptions(root=root))
    _error(excinfo, str(root / "images" / "case0.jpg"), "stem")


def test_check_path_bad_option_is_a_config_error(tmp_path: Path) -> None:
    root = make_cls_tree(tmp_path / "cls")
    with pytest.raises(ConfigError, match="test_fraction"):
        check_path(root, test_fraction=2.0)
