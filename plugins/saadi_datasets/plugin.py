"""Registration of the native-layout datasets (lazy: nothing here imports NumPy or Pillow)."""

from __future__ import annotations

from collections.abc import Callable

from saadi_core import hookimpl

_OPTIONS = "saadi_datasets.options"
#: the paper profile fine-tunes Stable Diffusion 1.5, whose native resolution is 512 px
_PAPER = {"paper": {"image_size": 512}}


@hookimpl
def saadi_register_datasets(register: Callable[..., None]) -> None:
    register(
        "lapgyn4",
        "saadi_datasets.lapgyn4:load",
        options=f"{_OPTIONS}:LapGyn4Options",
        description="LapGyn4 v1.2 (gynaecologic laparoscopy): one subset's class-per-folder images "
        "(default Anatomical_Structures: colon, liver, ovary, oviduct, uterus); seeded stratified split.",
        profiles=_PAPER,
    )
    register(
        "endoscapes",
        "saadi_datasets.endoscapes:load",
        options=f"{_OPTIONS}:EndoscapesOptions",
        description="Endoscapes2023 segmentation subset: {train,val,test}_seg/annotation_coco.json "
        "(RLE or polygons), 6 classes + background, official video-wise splits.",
        profiles=_PAPER,
    )
    register(
        "autolaparo",
        "saadi_datasets.autolaparo:load",
        options=f"{_OPTIONS}:AutoLaparoOptions",
        description="AutoLaparo task 3: imgs/ + masks/ (grey values 0,20..180 = 4 tools x shaft/manipulator "
        "+ uterus), official split by clip (train 001-170, val 171-227, test 228-300).",
        profiles=_PAPER,
    )
    register(
        "cholecseg8k",
        "saadi_datasets.cholecseg8k:load",
        options=f"{_OPTIONS}:CholecSeg8kOptions",
        description="CholecSeg8k: videoNN/videoNN_<start>/frame_<n>_endo.png with watershed (or colour) "
        "masks, 13 classes; seeded split by video (the dataset has no official split).",
        profiles=_PAPER,
    )
    register(
        "coco",
        "saadi_datasets.coco:load",
        options=f"{_OPTIONS}:CocoOptions",
        description="Any COCO instance/semantic annotation file(s) (polygons or RLE, via pycocotools) "
        "painted into label maps; categories = classes, background 0.",
        profiles=_PAPER,
    )
