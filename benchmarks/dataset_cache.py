"""Dataset cache: loading a big folder the first time vs from the cache (saadi_core.data.cache).

    python benchmarks/dataset_cache.py [--frames 2000] [--size 64] [--folder /tmp/saadi-bench-cache/data] [--repeats 3]

Writes (once; reused when present) a synthetic ``folder-seg`` dataset of ``--frames`` 854×480
PNG frames and single-channel PNG masks under /tmp — toy-seg scenes upscaled, with a per-frame
shift so no two files are equal — then times, through the registered ``folder-seg`` loader that
a run uses:

* the first load (decode every PNG, resize to ``--size``, write the cache entry) with an empty
  cache directory, ``--repeats`` times;
* the cached load (walk the folder for sizes/mtimes, read one ``.npz``), ``--repeats`` times;
* the key alone (the ``stat`` walk), to show what a cache hit costs besides reading the arrays.

Prints the wall times (median) and the cache entry's size. Say whether the machine was loaded
when quoting them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 854, 480


def make_folder(folder: Path, frames: int) -> None:
    """``folder/images/frameNNNNN.png`` + ``folder/masks/frameNNNNN.png`` + ``classes.yaml``."""
    from saadi_core.data.toy_seg import CLASS_NAMES, make_toy_seg

    done = folder / "complete"
    if done.is_file() and done.read_text() == str(frames):
        return
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "classes.yaml").write_text(
        "".join(f"{k}: {name}\n" for k, name in enumerate(CLASS_NAMES))
    )
    scenes = make_toy_seg(seed=0, n_train=50, n_test=1, image_size=64)
    for i in range(frames):
        k = i % len(scenes.train)
        image = Image.fromarray(scenes.train.images[k]).resize(
            (WIDTH + 16, HEIGHT + 16), Image.Resampling.BILINEAR
        )
        mask = Image.fromarray(scenes.train.masks[k].astype(np.uint8)).resize(
            (WIDTH + 16, HEIGHT + 16), Image.Resampling.NEAREST
        )
        dx, dy = (i // len(scenes.train)) % 16, (i // (16 * len(scenes.train))) % 16
        box = (dx, dy, dx + WIDTH, dy + HEIGHT)
        image.crop(box).save(folder / "images" / f"frame{i:05d}.png", compress_level=1)
        mask.crop(box).save(folder / "masks" / f"frame{i:05d}.png", compress_level=1)
    done.write_text(str(frames))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument(
        "--size", type=int, default=64, help="the profile's image size the split is resized to"
    )
    parser.add_argument("--folder", type=Path, default=Path("/tmp/saadi-bench-cache/data"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    make_folder(args.folder, args.frames)
    print(
        f"folder: {args.folder} ({args.frames} frames at {WIDTH}x{HEIGHT}, made/checked in {time.perf_counter() - started:.0f} s)"
    )

    from saadi_core.data.cache import cache_key
    from saadi_core.registry import get_registry

    entry = get_registry().get("dataset", "folder-seg")
    options = entry.build_options({"root": str(args.folder), "image_size": args.size})
    load = entry.load()
    cache = args.folder.parent / "cache"
    os.environ["SAADI_DATA_CACHE"] = str(cache)

    first, cached, keys = [], [], []
    for _ in range(args.repeats):
        shutil.rmtree(cache, ignore_errors=True)
        t = time.perf_counter()
        dataset = load(options)
        first.append(time.perf_counter() - t)
        assert dataset.meta["cache"] == "stored", dataset.meta["cache"]
    for _ in range(args.repeats):
        t = time.perf_counter()
        again = load(options)
        cached.append(time.perf_counter() - t)
        assert again.meta["cache"] == "hit"
        assert np.array_equal(again.train.images, dataset.train.images) and np.array_equal(
            again.test.masks, dataset.test.masks
        )
    for _ in range(args.repeats):
        t = time.perf_counter()
        cache_key("folder-seg", options.model_dump(mode="json"), args.folder)
        keys.append(time.perf_counter() - t)
    size_mb = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e6
    first_s, cached_s = statistics.median(first), statistics.median(cached)
    print(
        f"first load (decode + resize to {args.size} px + store), median of {args.repeats}: {first_s:.1f} s  ({[round(v, 1) for v in first]})"
    )
    print(
        f"cached load, median of {args.repeats}: {cached_s:.2f} s  ({[round(v, 2) for v in cached]})"
    )
    print(
        f"  of which the key (stat walk of {2 * args.frames + 1} files): {statistics.median(keys):.3f} s"
    )
    print(
        f"speed-up: {first_s / cached_s:.0f}x; cache entry: {size_mb:.0f} MB; train/test: {len(dataset.train)}/{len(dataset.test)}"
    )


if __name__ == "__main__":
    main()
