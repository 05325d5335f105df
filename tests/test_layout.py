"""The shape the codebase keeps: the pipeline reads as the method on one screen, and no class in
the core grows into a room of its own (issue 16)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "saadi_core"


def test_pipeline_is_one_screen_and_no_core_class_is_over_300_lines():
    assert len((CORE / "pipeline.py").read_text().splitlines()) <= 250
    large = [
        f"{path.relative_to(CORE)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in CORE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 300
    ]
    assert large == []


def test_every_stage_module_declares_its_inputs_and_outputs():
    from saadi_core import stages

    for name in (
        "data",
        "train",
        "pool",
        "score",
        "pair",
        "align",
        "sample",
        "evaluate",
        "fidelity",
        "downstream",
    ):
        module = __import__(f"{stages.__name__}.{name}", fromlist=["INPUTS"])
        assert isinstance(module.INPUTS, tuple) and isinstance(module.OUTPUTS, tuple), name
