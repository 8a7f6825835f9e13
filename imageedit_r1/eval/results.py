"""Reading a run directory back: the latest run's methods, benchmarks and judges, and its records.

Records left by earlier configurations (another method hash, judge model or prompt) stay in the
files for reuse but are not part of the current run's tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imageedit_r1.paths import OutsideFolder, inside
from imageedit_r1.store import latest_by_key

CRITERIA = ("fulfillment", "quality", "preservation", "total")
CRITERION_TITLES = {"fulfillment": "Fulfillment (0–4)", "quality": "Quality (0–3)",
                    "preservation": "Preservation (0–3)", "total": "Total (0–10)"}


@dataclass
class RunData:
    run_dir: Path
    manifest: dict[str, Any]
    edits: list[dict[str, Any]]  # current edit records, one per item
    results: list[dict[str, Any]]  # current judgment records, one per item and judge

    @property
    def methods(self) -> list[dict[str, Any]]:
        return self.manifest["methods"]

    @property
    def benchmarks(self) -> list[str]:
        return self.manifest["benchmarks"]

    @property
    def judges(self) -> list[dict[str, Any]]:
        return self.manifest["judges"]

    def scored(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("status") == "scored"]

    def file(self, name: str | None) -> Path | None:
        """The file a record names (``original_path``, ``edited_path``), or None when it names
        none or one outside the run folder (records can be edited or copied: only the run's own
        files are read, embedded in a report or sent to a judge)."""
        return run_file(self.run_dir, name)


def run_file(run_dir: str | Path, name: str | None) -> Path | None:
    """``run_dir / name`` when ``name`` is a relative path that stays inside ``run_dir``; else None."""
    if not isinstance(name, str) or not name:
        return None
    try:
        return inside(run_dir, name)
    except OutsideFolder:
        return None


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    manifest_path = run_dir / "run.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{run_dir} holds no run.json: run `python -m imageedit_r1.eval run` first")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    method_hashes = {m["name"]: m["hash"] for m in manifest["methods"]}
    judges = {j["name"]: j for j in manifest["judges"]}
    benchmarks = set(manifest["benchmarks"])
    prompt = manifest.get("prompt_sha256")

    def current_method(record: dict[str, Any]) -> bool:
        return record.get("benchmark") in benchmarks and method_hashes.get(record.get("method")) == record.get(
            "method_hash")

    edits = [r for r in latest_by_key(run_dir / "edits.jsonl").values() if current_method(r)]
    results = []
    for record in latest_by_key(run_dir / "results.jsonl").values():
        judge = judges.get(record.get("judge"))
        if not current_method(record) or judge is None:
            continue
        if record.get("judge_model") != judge["model"] or record.get("prompt_sha256") != prompt:
            continue
        if record.get("judge_settings", judge["settings"]) != judge["settings"]:
            continue
        results.append(record)
    # A judgment of an edit that has since been redone belongs to the old image: leave it out.
    edit_sha = {(e["benchmark"], e["sample_id"], e["method"]): e.get("edited_sha256") for e in edits
                if e.get("status") == "ok"}
    results = [r for r in results if r.get("status") != "scored"
               or edit_sha.get((r["benchmark"], r["sample_id"], r["method"])) == r.get("edited_sha256")]
    return RunData(run_dir, manifest, edits, results)
