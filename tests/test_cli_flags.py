"""Every subcommand of ``data``, ``eval`` and ``train`` takes the common flags, before it or after it.

``-q`` / ``--quiet`` / ``--no-progress`` all mean "no progress bars" (``args.quiet``).
"""

from __future__ import annotations

import importlib

import pytest

# The arguments each subcommand requires, so that only the flags vary.
REQUIRED = {
    "imageedit_r1.data": {
        "inspect": ["--source", "psr"], "label": [], "subsets": [],
        "export": ["--source", "psr", "--labels", "labels.jsonl", "--out", "out"],
    },
    "imageedit_r1.eval": {
        "run": [], "table": ["--run-dir", "r"], "alignment": ["--run-dir", "r", "--human", "h.csv"],
        "report": ["--run-dir", "r"],
    },
    "imageedit_r1.train": {
        "preflight": ["trl"], "curves": ["log.jsonl"], "budget": [], "check-model": ["folder"],
        "export-checkpoint": ["--trainer", "trl", "--local-dir", "d", "--out", "o"],
    },
}
FLAGS = ("-q", "--quiet", "--no-progress")


def _parser(tool: str):
    return importlib.import_module(f"{tool}.__main__").build_parser()


def _subcommands(parser) -> set[str]:
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(action.choices)


@pytest.mark.parametrize("tool", sorted(REQUIRED))
def test_the_table_names_every_subcommand(tool):
    assert _subcommands(_parser(tool)) == set(REQUIRED[tool])


@pytest.mark.parametrize(("tool", "command"), [(t, c) for t in sorted(REQUIRED) for c in sorted(REQUIRED[t])])
def test_every_subcommand_takes_the_quiet_flag_in_either_place(tool, command):
    parser = _parser(tool)
    required = REQUIRED[tool][command]
    assert parser.parse_args([command, *required]).quiet is False
    for flag in FLAGS:
        assert parser.parse_args([flag, command, *required]).quiet is True, (flag, "before")
        assert parser.parse_args([command, *required, flag]).quiet is True, (flag, "after")
