"""Every shipped config, recipe or manifest that the docs, the README or a command's help names
exists: a newcomer copies these paths as they are written."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMED = re.compile(r"(?<![\w/.-])((?:examples|recipes)/[\w./-]+\.(?:ya?ml|sh|jsonl|json))")


def named_paths() -> dict[str, set[str]]:
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "imageedit_r1").rglob("*.py")),
               *sorted((ROOT / "recipes").rglob("*.sh")), *sorted((ROOT / "recipes").rglob("*.yaml")), ROOT / "Dockerfile"]
    found: dict[str, set[str]] = {}
    for source in sources:
        for path in NAMED.findall(source.read_text(encoding="utf-8")):
            found.setdefault(path.rstrip("."), set()).add(str(source.relative_to(ROOT)))
    return found


def test_every_named_example_and_recipe_exists():
    found = named_paths()
    assert "examples/serve.yaml" in found and "recipes/run_grpo_qwen25vl.sh" in found  # the scan reads them
    missing = {path: sorted(where) for path, where in found.items() if not (ROOT / path).exists()}
    assert missing == {}
