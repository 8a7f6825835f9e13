"""Layers never point up: the pipeline package imports nothing from the layers built on it (data
tools, training, evaluation, scale-out, app, service)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imageedit_r1"
ABOVE_THE_PIPELINE = tuple(f"imageedit_r1.{name}" for name in ("data", "train", "eval", "scale", "app", "serve"))


def is_above(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in ABOVE_THE_PIPELINE)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at module level or inside functions, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("path", sorted((PACKAGE / "pipeline").rglob("*.py")), ids=lambda path: path.name)
def test_no_module_of_the_pipeline_imports_a_layer_above_it(path):
    upward = [f"{path.name}:{line} imports {name}" for line, name in imported_modules(path) if is_above(name)]
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def run():\n    from imageedit_r1 import scale\n    import imageedit_r1.eval.runner\n"
                      "    from imageedit_r1.data.rows import MissingColumnError\n    import imageedit_r1.database\n")
    assert [name for _, name in imported_modules(module) if is_above(name)] == [
        "imageedit_r1.scale", "imageedit_r1.eval.runner", "imageedit_r1.data.rows",
        "imageedit_r1.data.rows.MissingColumnError"]
