"""Checksums of stage outputs: a cached result is used only if its files are the ones written.

A stage's ``stage.json`` lists every file the stage wrote with its size and SHA-256
(:func:`checksum_tree`). Loading a cached stage re-reads and re-hashes them
(:func:`verify_tree`); a truncated ``model.pt``, an edited ``scores.json`` or a missing file makes
the stage count as absent, so it is recomputed (with a warning naming the file) instead of failing
forever with an unreadable-file error from deep inside torch or json.

Hashing is cheap next to computing: a cut-down run's stages hold a few MB
(``benchmarks/integrity_overhead.py`` measures it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: read size for hashing (large reads keep Python overhead negligible)
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path, exclude: tuple[str, ...]) -> list[Path]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.relative_to(root).as_posix() not in exclude:
                found.append(path)
    return sorted(found)


def checksum_tree(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, int | str]]:
    """``{relative path: {"size": bytes, "sha256": hex}}`` of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in _files(root, exclude)
    }


def verify_tree(root: Path, checksums: dict[str, dict[str, int | str]]) -> str | None:
    """``None`` if every listed file is present with its size and hash, else what is wrong with
    the first file that is not (one line, with the file's path)."""
    for rel, expected in sorted(checksums.items()):
        path = root / rel
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != expected.get("size"):
            return f"{path} has {size} bytes, {expected.get('size')} were written"
        if file_sha256(path) != expected.get("sha256"):
            return f"{path} does not match the checksum written with it"
    return None
