"""Command line: ``python -m imageedit_r1.eval {run,table,alignment,report} --help``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from imageedit_r1.cli_common import add_common_flags, interrupted, print_error
from imageedit_r1.store import IF_BUSY, atomic_write_text

DESCRIPTION = """\
Evaluate image editors the way the ImageEdit-R1 paper does: edit every benchmark sample with
every method, score each edit with LLM judges (the paper's Table 2 prompt), and summarise.

  run        plan + edit + judge, resumable (results append to <out_dir>/results.jsonl); each plan
             is made once per (agents, sample) and shared by every method with those agents
  table      Table 1: methods x (benchmark x judge), Average, delta vs Original, bootstrap CIs
  alignment  agreement of the judges with human scores (means, Pearson, Spearman)
  report     one self-contained HTML file: tables, plots and a side-by-side gallery
"""


def _split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def _select(items, names: list[str] | None, what: str):
    """The items ``--methods`` / ``--benchmarks`` / ``--judges`` name; a name the config lacks is a
    one-line error (exit status 2) with the name probably meant."""
    from imageedit_r1.config import ConfigError, did_you_mean

    if not names:
        return items
    known = sorted({item.name for item in items})
    unknown = [name for name in names if name not in known]
    if unknown:
        guesses = [f"{name!r}" + (f" (did you mean {hint!r}?)" if (hint := did_you_mean(name, known)) else "")
                   for name in unknown]
        raise ConfigError(f"--{what}: no {what.removesuffix('s')} named {', '.join(guesses)}; the config has {known}")
    return [item for item in items if item.name in names]


def _write(text: str, out: str | None) -> None:
    if out:
        atomic_write_text(out, text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _setup_logging(out_dir: Path) -> None:
    from imageedit_r1.masking import MaskingFilter

    out_dir.mkdir(parents=True, exist_ok=True)
    masking = MaskingFilter()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    logfile = logging.FileHandler(out_dir / "run.log", encoding="utf-8")
    logfile.setLevel(logging.INFO)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (console, logfile):
        handler.setFormatter(formatter)
        handler.addFilter(masking)
        root.addHandler(handler)
    for noisy in ("httpx", "httpcore", "openai", "google_genai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    from imageedit_r1.eval.config import load_eval_config
    from imageedit_r1.eval.runner import EvalRunner

    config = load_eval_config(args.config, args.overrides)
    config.methods = _select(config.methods, _split(args.methods), "methods")
    config.benchmarks = _select(config.benchmarks, _split(args.benchmarks), "benchmarks")
    config.judges = _select(config.judges, _split(args.judges), "judges")
    if args.limit is not None:
        for bench in config.benchmarks:
            bench.limit = args.limit
    if args.out_dir:
        config.out_dir = args.out_dir
    runner = EvalRunner(config, retry_failed=args.retry_failed, progress=not args.quiet, if_busy=args.if_busy)
    _setup_logging(Path(config.out_dir))
    for warning in runner.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    # The folder first, then its stores: a run that holds it now is waited for (or refused), and
    # what it wrote is counted as done. An estimate only reads, so it does not wait.
    with contextlib.nullcontext() if args.estimate else runner.locked():
        return _estimate_and_run(args, config, runner)


def _estimate_and_run(args: argparse.Namespace, config, runner) -> int:
    from imageedit_r1.eval.preflight import eval_problems, pending_from_estimate

    rows = runner.estimate()
    print("Pending work and estimated cost (prices from the config):")
    print(runner.format_estimate(rows))
    if args.estimate:
        return 0
    total = sum(row.cost_usd or 0.0 for row in rows)
    if config.max_cost_usd is not None and total > config.max_cost_usd:
        print(f"estimated ${total:,.2f} is over max_cost_usd=${config.max_cost_usd:,.2f}; not starting "
              "(raise max_cost_usd or narrow the run)", file=sys.stderr)
        return 2
    # Options, API keys and weights of everything with work pending, before the first edit.
    problems = eval_problems(config, pending_from_estimate(config, rows), args.stage)
    if problems:
        print_error("\n".join(problems))
        return 2
    try:
        summary = runner.run(stage=args.stage)
    except KeyboardInterrupt:
        return interrupted()
    print("\n".join(summary.lines()))
    print(f"results: {Path(config.out_dir) / 'results.jsonl'}")
    return 1 if summary.setup_errors else 0


def cmd_table(args: argparse.Namespace) -> int:
    from imageedit_r1.eval import tables
    from imageedit_r1.eval.results import load_run

    run = load_run(args.run_dir)
    if args.breakdown:
        rows = tables.criteria_breakdown(run)
        _write(tables.breakdown_csv(rows) if args.format == "csv" else tables.breakdown_markdown(rows), args.out)
        return 0
    table = tables.build_table(run, criterion=args.criterion, n_boot=args.bootstrap, confidence=args.confidence,
                               seed=args.seed)
    _write(tables.to_csv(table) if args.format == "csv" else tables.to_markdown(table, ci=not args.no_ci), args.out)
    if args.format == "csv" or args.out:  # the markdown on the terminal carries these notes itself
        for note in tables.snapshot_notes(table):
            print(f"warning: {note}", file=sys.stderr)
    return 0


def cmd_alignment(args: argparse.Namespace) -> int:
    from imageedit_r1.eval import alignment
    from imageedit_r1.eval.results import load_run

    results, unmatched = alignment.align(load_run(args.run_dir), args.human, judges=args.judge)
    if unmatched:
        print(f"note: {unmatched} human-scored items have no judge score in this run", file=sys.stderr)
    if not any(result.n for result in results):
        print_error(f"no human-scored item of {args.human} matches a judged item in {args.run_dir}: check that "
                    "sample_id (and benchmark, method) name the run's items")
        return 1
    _write(alignment.to_csv(results) if args.format == "csv" else alignment.to_markdown(results), args.out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from imageedit_r1.eval.report import write_report

    out = write_report(args.run_dir, args.out or Path(args.run_dir) / "report.html", max_items=args.max_items,
                       n_boot=args.bootstrap)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imageedit_r1.eval", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="edit and judge (resumable)",
                         description="Edit every sample with every method, then judge every edit. Finished items "
                                     "are never redone: re-run the same command to resume.")
    run.add_argument("--config", help="YAML config (default: the packaged configs/eval.yaml, the paper's setup)")
    run.add_argument("overrides", nargs="*", help="config overrides as key=value (e.g. concurrency=16)")
    run.add_argument("--methods", help="comma-separated method names to run (default: all)")
    run.add_argument("--benchmarks", help="comma-separated benchmark names (default: all)")
    run.add_argument("--judges", help="comma-separated judge names (default: all)")
    run.add_argument("--limit", type=int, help="at most this many samples per benchmark (a smoke run)")
    run.add_argument("--out-dir", help="override out_dir")
    run.add_argument("--stage", choices=("all", "plan", "edit", "judge"), default="all",
                     help="plan only (the agents' shared plans), edit only (plans first, then edits), judge only "
                          "(existing edits), or all (default)")
    run.add_argument("--estimate", action="store_true",
                     help="print the pending edits and judge calls with their estimated cost, and stop")
    run.add_argument("--retry-failed", action="store_true",
                     help="also redo items that failed permanently (refusals, unreadable replies)")
    run.add_argument("--if-busy", choices=IF_BUSY, default="wait",
                     help="when another run is using out_dir: wait for it, then do only what it left (default), "
                          "or stop at once")
    run.set_defaults(func=cmd_run)

    table = sub.add_parser("table", help="Table 1 (markdown or CSV)")
    table.add_argument("--run-dir", required=True)
    table.add_argument("--criterion", default="total", choices=("total", "fulfillment", "quality", "preservation"))
    table.add_argument("--breakdown", action="store_true", help="per-criterion means per method and judge instead")
    table.add_argument("--format", choices=("md", "csv"), default="md")
    table.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    table.add_argument("--confidence", type=float, default=0.95)
    table.add_argument("--seed", type=int, default=0)
    table.add_argument("--no-ci", action="store_true", help="omit intervals in markdown")
    table.add_argument("--out", help="write here instead of stdout")
    table.set_defaults(func=cmd_table)

    align = sub.add_parser("alignment", help="judge vs human scores (Table 4 layout)",
                           description="CSV columns: sample_id, fulfillment, quality, preservation; optional "
                                       "benchmark, method, annotator (annotators are averaged per item).")
    align.add_argument("--run-dir", required=True)
    align.add_argument("--human", required=True, help="CSV of human scores")
    align.add_argument("--judge", action="append", help="judge name (repeatable; default: every judge)")
    align.add_argument("--format", choices=("md", "csv"), default="md")
    align.add_argument("--out")
    align.set_defaults(func=cmd_alignment)

    report = sub.add_parser("report", help="self-contained HTML report")
    report.add_argument("--run-dir", required=True)
    report.add_argument("--out", help="HTML file (default: <run-dir>/report.html)")
    report.add_argument("--max-items", type=int, default=40, help="gallery size (default 40)")
    report.add_argument("--bootstrap", type=int, default=1000)
    report.set_defaults(func=cmd_report)
    add_common_flags(parser, sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return interrupted()
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        print_error(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
