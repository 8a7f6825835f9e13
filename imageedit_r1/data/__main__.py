"""Command line for RL data: ``python -m imageedit_r1.data {inspect,label,export,subsets} --help``.

Typical flow::

    python -m imageedit_r1.data subsets --out subsets                  # the paper's eval draws
    python -m imageedit_r1.data label --source realedit@train --limit 4000 --out labels/realedit.jsonl \\
        teacher.model=gpt-4.1 concurrency=16
    python -m imageedit_r1.data export --source realedit@train --labels labels/realedit.jsonl \\
        --subsets subsets --out data/rl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imageedit_r1.cli_common import add_common_flags, interrupted, print_error
from imageedit_r1.store import IF_BUSY

SOURCE_HELP = (
    "a source spec NAME[:LOCATION][@SPLIT][#REVISION]; NAME is psr, realedit, ultraedit or manifest; LOCATION is "
    "a hub name, a parquet/JSONL file or a folder of parquet shards (default: the benchmark's hub repository); "
    "REVISION pins a hub dataset to a commit, tag or branch; e.g. 'psr', 'realedit@train', "
    "'ultraedit:/data/UltraEdit@FreeForm_0', 'ultraedit@FreeForm_0#<commit>', 'manifest:requests.jsonl'. Repeatable."
)


def _print_issues(loader) -> None:
    """Repeated ids and disagreeing rows a pass found in the source (never fatal)."""
    if loader.issues:
        print(f"{loader.describe()}:\n{loader.issues.summary()}", file=sys.stderr)


def _add_source_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--source", action="append", required=required, metavar="SPEC", help=SOURCE_HELP)
    parser.add_argument("--limit", type=int, default=None, help="at most this many samples per source")
    parser.add_argument(
        "--request-field",
        default="instruction",
        choices=["instruction", "simplified_instruction"],
        help="PSR only: which instruction column is the request (default: instruction)",
    )
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="ROLE=COLUMN",
        help="use COLUMN for ROLE (id, image or request) when a dataset names its columns differently",
    )
    parser.add_argument("--ids-file", default=None, help="keep only the ids in this subset/JSON id list file")
    parser.add_argument(
        "--max-pixels", type=int, default=None, help="refuse images larger than this (decompression-bomb guard)"
    )


def _loaders(args: argparse.Namespace):
    from imageedit_r1.data.sources import build_loader, parse_source_spec
    from imageedit_r1.data.subsets import read_subset
    from imageedit_r1.images import DEFAULT_MAX_PIXELS

    columns = {}
    for item in args.column:
        role, sep, column = item.partition("=")
        if not sep or not column:
            raise ValueError(f"--column takes ROLE=COLUMN, got {item!r}")
        columns[role.strip()] = column.strip()
    ids = read_subset(args.ids_file).ids if args.ids_file else None
    loaders = []
    for spec in args.source:
        name, _, _ = parse_source_spec(spec)
        options = {
            "columns": columns or None,
            "ids": ids,
            "limit": args.limit,
            "max_pixels": args.max_pixels or DEFAULT_MAX_PIXELS,
        }
        if name == "psr":
            options["request_field"] = args.request_field
        loaders.append(build_loader(spec, **options))
    return loaders


# ----------------------------------------------------------------------------- inspect


def cmd_inspect(args: argparse.Namespace) -> int:
    for loader in _loaders(args):
        print(f"== {loader.describe()}")
        for sample in loader:
            meta = {k: v for k, v in sample.meta.items() if k not in ("row",)}
            print(f"{sample.id}\t{sample.image.size[0]}x{sample.image.size[1]}\t{sample.request!r}\t{json.dumps(meta, default=str)[:200]}")
        print(loader.report.summary(), file=sys.stderr)
        _print_issues(loader)
    return 0


# ----------------------------------------------------------------------------- label


def _label_config(args: argparse.Namespace):
    from imageedit_r1.config import load_config
    from imageedit_r1.data.teacher import LabelConfig

    overrides = list(args.overrides)
    if args.concurrency is not None:
        overrides.append(f"concurrency={args.concurrency}")
    if args.retry_failed:
        overrides.append("retry_failed=true")
    return load_config(LabelConfig, args.config, overrides)


def cmd_label(args: argparse.Namespace) -> int:
    from imageedit_r1.backends.checks import backend_problems
    from imageedit_r1.data.teacher import TeacherLabeller
    from imageedit_r1.endpoints import build_endpoint, endpoint_options
    from imageedit_r1.images import SkipReport

    config = _label_config(args)
    if args.print_config:
        from imageedit_r1.config import to_yaml

        print(to_yaml(config))
        return 0
    if not args.source or not args.out:
        raise ValueError("label needs --source and --out (or --print-config)")
    # Option names, the API key and the teacher's weights, before any sample is read.
    problems = config.teacher.problems("teacher") or backend_problems(
        config.teacher.backend, endpoint_options(config.teacher), "teacher")
    if problems:
        raise ValueError("\n".join(problems))
    backend = build_endpoint(config.teacher)
    labeller = TeacherLabeller(backend, args.out, config, if_busy=args.if_busy)
    loaders = _loaders(args)
    skipped = SkipReport()

    def samples():
        for loader in loaders:
            yield from loader
            skipped.merge(loader.report)
            _print_issues(loader)

    total = args.limit * len(loaders) if args.limit else None
    try:
        summary = labeller.run(samples(), progress=not args.quiet, total=total)
    except KeyboardInterrupt:
        return interrupted()
    summary.skipped = skipped
    print(summary.summary())
    print(f"labels: {args.out}")
    if summary.aborted:
        return 2
    if summary.failures and not (summary.labelled or summary.cached):
        print_error(f"no sample was labelled: all {len(summary.failures)} failed (reasons above)")
        return 1
    return 1 if summary.failures and args.strict else 0


# ----------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    from imageedit_r1.data.export import export_labelled
    from imageedit_r1.data.labels import LabelIndex
    from imageedit_r1.data.subsets import EvalGuard, LeakageError

    labels = LabelIndex.from_files(args.labels)
    if not labels.records:
        raise ValueError(f"no successful labels in {args.labels}; run `python -m imageedit_r1.data label` first")
    guard = None
    if not args.no_leakage_guard:
        if not Path(args.subsets).exists():
            raise ValueError(
                f"eval subsets not found at {args.subsets!r}: the leakage guard needs them. Draw them with "
                "`python -m imageedit_r1.data subsets`, point --subsets at them, or pass --no-leakage-guard."
            )
        guard = EvalGuard.from_paths([args.subsets])
    from imageedit_r1.image_budget import ImageBudget, ImageBudgetError

    formats = args.format or ["easyr1", "verl"]
    try:
        budget = ImageBudget(args.image_min_pixels, args.image_max_pixels)
    except ImageBudgetError as exc:
        raise ValueError(f"--image-min-pixels/--image-max-pixels: {exc}") from None
    try:
        report = export_labelled(
            _loaders(args),
            labels,
            args.out,
            guard=guard,
            drop_eval_overlap=args.drop_eval_overlap,
            progress=not args.quiet,
            formats=formats,
            file_format=args.file_format,
            seed=args.seed,
            val_fraction=args.val_fraction,
            image_budget=budget,
        )
    except LeakageError as exc:
        print_error(exc)
        return 3
    except KeyboardInterrupt:
        return interrupted()
    print(report.summary())
    if not report.stats.total:
        print_error("nothing was exported: every sample was unlabelled, unreadable, overlapping or dropped "
                    "(reasons above)")
        return 1
    return 0


# ----------------------------------------------------------------------------- subsets


def cmd_subsets(args: argparse.Namespace) -> int:
    from imageedit_r1.data.sources import build_loader, parse_source_spec
    from imageedit_r1.data.subsets import PAPER_SUBSETS, draw_subset

    benchmarks = args.benchmark or list(PAPER_SUBSETS)
    if args.source and len(benchmarks) != len(args.source):
        raise ValueError("give one --source per --benchmark (in the same order), or none for the defaults")
    sizes = args.size or []
    if len(sizes) not in (0, 1, len(benchmarks)):
        raise ValueError("give one --size for all benchmarks, or one per --benchmark (in the same order)")
    for position, benchmark in enumerate(benchmarks):
        default_spec, default_size = PAPER_SUBSETS.get(benchmark, (None, None))
        spec = args.source[position] if args.source else default_spec
        if spec is None:
            raise ValueError(f"no default source for benchmark {benchmark!r}; pass --source")
        size = default_size if not sizes else _size(sizes[position if len(sizes) > 1 else 0])
        name, _, _ = parse_source_spec(spec)
        options = {"max_rows": args.max_rows}
        if name == "psr":
            options["request_field"] = args.request_field
        loader = build_loader(spec, **options)
        subset = draw_subset(loader, benchmark, size, seed=args.seed, source=spec, progress=not args.quiet)
        path = subset.write(args.out)
        print(
            f"{benchmark}: {len(subset.ids)} of {subset.pool} requests (seed {subset.seed}) -> {path}"
            + (f"; {len(subset.skipped)} unreadable skipped" if subset.skipped else "")
            + (f"; {len(subset.duplicates)} repeated ids (first row kept, listed in the file)" if subset.duplicates else "")
        )
        _print_issues(loader)
        if size is not None and len(subset.ids) < size:
            print(f"  warning: asked for {size}, the source had only {len(subset.ids)} usable requests", file=sys.stderr)
    return 0


def _size(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--size takes a number or 'all', got {text!r}") from None


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imageedit_r1.data",
        description="RL data for the decomposition agent: load benchmarks, label ground truth with a teacher "
        "VLM, export EasyR1 / verl training files, draw evaluation subsets. See docs/data.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="print a few samples of a source (ids, sizes, requests)")
    _add_source_options(inspect)
    inspect.set_defaults(func=cmd_inspect, limit=5)

    label = commands.add_parser(
        "label",
        help="label ground-truth decompositions with a teacher VLM (cached, resumable)",
        description="Ask a teacher VLM for the ground-truth decomposition of each (image, request), with structured "
        "JSON output, validated and mapped onto the action taxonomy. Results are appended to --out, which is also "
        "the cache: a re-run sends requests only for what is missing. Settings are key=value overrides of the "
        "label config (see --print-config), e.g. teacher.model=gpt-4.1 teacher.backend=gemini "
        "teacher.base_url=http://localhost:8000/v1 concurrency=16 'prices[gpt-5.1].input_per_mtok=1.25' (a model name "
        "with dots goes in brackets). API keys come from the environment only (OPENAI_API_KEY, GEMINI_API_KEY or "
        "teacher.api_key_env).",
    )
    _add_source_options(label, required=False)
    label.add_argument("--out", help="labels JSONL file (appended to; the cache)")
    label.add_argument("--config", default=None, help="YAML label config (defaults: --print-config)")
    label.add_argument("--concurrency", type=int, default=None, help="parallel teacher calls (default 8)")
    label.add_argument("--retry-failed", action="store_true", help="ask again for samples whose answer was invalid or refused")
    label.add_argument("--strict", action="store_true", help="exit with status 1 when any sample failed")
    label.add_argument("--if-busy", choices=IF_BUSY, default="wait",
                       help="when another run is labelling into --out: wait for it, then ask only for what it "
                            "left (default), or stop at once")
    label.add_argument("--print-config", action="store_true", help="print the resolved config (incl. the price table) and exit")
    label.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    label.set_defaults(func=cmd_label)

    export = commands.add_parser(
        "export",
        help="write EasyR1, verl and TRL training files from labelled samples",
        description="Export every sample of the sources that has a successful label, as EasyR1 files "
        "(problem/answer/images), verl parquet (data_source/prompt/images/ability/reward_model/extra_info) "
        "and, with --format trl, TRL GRPOTrainer parquet (conversational prompt with the image/images/ground_truth), "
        "split train/val by a seeded hash of the id. Refuses when any sample is in an eval subset by id or by "
        "image hash.",
    )
    _add_source_options(export)
    export.add_argument("--labels", action="append", required=True, help="labels JSONL file(s) from `label`")
    export.add_argument("--out", required=True, help="output folder: <out>/<format>/, export_manifest.json")
    export.add_argument("--format", action="append", choices=["easyr1", "verl", "trl"],
                        help="formats, repeatable (default: easyr1 and verl)")
    export.add_argument("--file-format", default="parquet", choices=["parquet", "jsonl"], help="EasyR1 file type (verl and TRL: parquet)")
    export.add_argument("--seed", type=int, default=0, help="train/val split seed (default 0)")
    export.add_argument("--val-fraction", type=float, default=0.05, help="share of samples in val (default 0.05)")
    from imageedit_r1.image_budget import DEFAULT_BUDGET

    export.add_argument(
        "--image-min-pixels",
        type=int,
        default=DEFAULT_BUDGET.min_pixels,
        help="image budget, lower bound: images are written at the size Qwen's processor gives them within "
        f"[min, max] pixels (default {DEFAULT_BUDGET.min_pixels}; the recipes must use the same budget)",
    )
    export.add_argument(
        "--image-max-pixels",
        type=int,
        default=DEFAULT_BUDGET.max_pixels,
        help=f"image budget, upper bound (default {DEFAULT_BUDGET.max_pixels} = {DEFAULT_BUDGET.max_image_tokens} image tokens)",
    )
    export.add_argument("--subsets", default="subsets", help="eval subsets folder or file for the leakage guard")
    export.add_argument("--no-leakage-guard", action="store_true", help="skip the eval-overlap check (not advised)")
    export.add_argument("--drop-eval-overlap", action="store_true", help="leave overlapping samples out instead of refusing")
    export.set_defaults(func=cmd_export)

    subsets = commands.add_parser(
        "subsets",
        help="draw the seeded evaluation subsets (PSR 328, RealEdit 1,000 of test, UltraEdit 1,000)",
        description="Draw reproducible evaluation subsets and write them as subsets/<benchmark>.json (ids in draw "
        "order plus image hashes for the leakage guard). Defaults follow the paper: psr = every request of "
        "PSRDataset/PSR-328, realedit = 1,000 of peter-sushko/RealEdit test, ultraedit = 1,000 of "
        "BleachNick/UltraEdit FreeForm_0.",
    )
    subsets.add_argument("--benchmark", action="append", help="psr, realedit, ultraedit (default: all three)")
    subsets.add_argument("--source", action="append", help="source spec per benchmark (default: the hub repository)")
    subsets.add_argument(
        "--size",
        action="append",
        help="requests per subset, a number or 'all'; once for every benchmark or once per --benchmark "
        "(default: the paper's: psr all, realedit 1000, ultraedit 1000)",
    )
    subsets.add_argument("--seed", type=int, default=0, help="draw seed (default 0)")
    subsets.add_argument("--max-rows", type=int, default=None, help="draw from the first N rows only (huge streams)")
    subsets.add_argument("--request-field", default="instruction", choices=["instruction", "simplified_instruction"])
    subsets.add_argument("--out", default="subsets", help="output folder (default: subsets)")
    subsets.set_defaults(func=cmd_subsets)
    add_common_flags(parser, commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    from imageedit_r1.masking import MaskingFilter

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        print_error(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
