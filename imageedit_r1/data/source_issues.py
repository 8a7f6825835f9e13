"""What a pass over a benchmark source found wrong with the data itself (not with one image).

Two kinds, both reported and never fatal:

- a repeated id: two rows of a source carry the same id (UltraEdit's ``idx`` is not documented as
  unique within a split; a RealEdit train row may repeat its request). The first row is kept, so a
  pass yields each id once; the report names every repeated id and its row numbers.
- a PSR post whose rows hold different source images (multi-image posts): the first row is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SourceIssues:
    """``duplicates``: id -> row numbers (the first is the row kept); ``conflicts``: (id, reason)."""

    duplicates: dict[str, list[int]] = field(default_factory=dict)
    conflicts: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.duplicates or self.conflicts)

    def add_duplicate(self, item_id: str, first_row: int, row: int) -> None:
        self.duplicates.setdefault(item_id, [first_row]).append(row)

    def merge(self, other: SourceIssues) -> None:
        for item_id, rows in other.duplicates.items():
            self.duplicates.setdefault(item_id, [])
            self.duplicates[item_id].extend(row for row in rows if row not in self.duplicates[item_id])
        self.conflicts.extend(item for item in other.conflicts if item not in self.conflicts)

    def summary(self, limit: int = 20) -> str:
        """Human-readable lines, empty when nothing was found."""
        lines = []
        if self.duplicates:
            lines.append(f"{len(self.duplicates)} ids repeated (the first row of each is kept, the others left out):")
            for item_id, rows in list(self.duplicates.items())[:limit]:
                lines.append(f"  {item_id}: rows {', '.join(str(row) for row in rows)}")
            if len(self.duplicates) > limit:
                lines.append(f"  ... and {len(self.duplicates) - limit} more")
        if self.conflicts:
            lines.append(f"{len(self.conflicts)} requests whose rows disagree (the first row is kept):")
            lines += [f"  {item_id}: {reason}" for item_id, reason in self.conflicts[:limit]]
            if len(self.conflicts) > limit:
                lines.append(f"  ... and {len(self.conflicts) - limit} more")
        return "\n".join(lines)
