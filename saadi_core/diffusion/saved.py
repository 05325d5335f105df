"""The record a diffusion generator writes beside its weights, and reading it back safely.

Every generator of the toolkit saves its networks with diffusers' ``save_pretrained`` and a JSON
record (format version, resolution, class names, …) naming what the weights need to be used.
Loading starts the same way for all of them — the record must exist, be of the format this code
reads, and the sub-directories it needs must be there — so a wrong or half-copied directory is a
one-line :class:`DataError` naming the file, never a traceback from deep inside diffusers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saadi_core.errors import DataError


def write_record(path: Path, record_file: str, record: dict[str, Any]) -> None:
    """Write the generator's record (with its ``format``) next to the saved weights."""
    (Path(path) / record_file).write_text(json.dumps(record, indent=2))


def read_record(
    path: Path, record_file: str, fmt: int, name: str, parts: Sequence[str] = ()
) -> dict[str, Any]:
    """The record of a saved ``name`` generator at ``path``, checked: present, of format ``fmt``,
    with every sub-directory in ``parts``."""
    path = Path(path)
    file = path / record_file
    if not file.is_file():
        raise DataError(f"not a saved {name} generator (missing {record_file}): {path}")
    record = json.loads(file.read_text())
    if record.get("format") != fmt:
        raise DataError(
            f"unsupported {name} save format {record.get('format')!r} in {file} (this version reads format {fmt})"
        )
    for part in parts:
        if not (path / part).is_dir():
            raise DataError(f"saved {name} generator {path} lacks its '{part}/' directory")
    return record


def load_parts(path: Path, classes: dict[str, Any]) -> dict[str, Any]:
    """``{sub_directory: cls.from_pretrained(path / sub_directory)}`` — the diffusers and
    transformers parts of a saved generator, loaded without progress bars."""
    from saadi_core.diffusion.builders import quiet_hf_progress

    with quiet_hf_progress():
        return {name: cls.from_pretrained(Path(path) / name) for name, cls in classes.items()}
