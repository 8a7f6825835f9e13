"""``python -m imageedit_r1.train``: pre-flight checks, reward curves, checkpoint export.

  preflight {easyr1,verl,trl} [--dry-run] -- CMD...   check a trainer command line before launching it
  curves LOG [LOG...] --out curves.png            plot reward components over training steps (any format
                                                  matplotlib writes, by the extension)
  export-checkpoint --trainer T --local-dir D --out O   merge a checkpoint to a Hugging Face folder
  budget [--min-pixels N] [--max-pixels N] [--shell]    the image budget and the max_prompt_length it needs
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Sequence

from imageedit_r1.cli_common import print_error


class CommandLineError(ValueError):
    """The trainer command after ``--`` is not one this can check (one ``error:`` line, exit status 2)."""


_TRAINER_MODULES = {
    "easyr1": "verl.trainer.main",
    "verl": "verl.trainer.main_ppo",
    "trl": "imageedit_r1.train.trl_grpo",
}


def _format_command(cmd: Sequence[str], *, flags: bool = False) -> str:
    """One argument (``flags``: one ``--flag value…``) per line, shell-quoted, so a long launch reads
    (and pastes) cleanly."""
    try:
        split = list(cmd).index("-m") + 2
    except ValueError:
        split = 1
    head = shlex.join(cmd[:split])
    tail: list[str] = []
    for arg in cmd[split:]:
        if flags and tail and not arg.startswith("-"):
            tail[-1] += " " + shlex.quote(arg)
        else:
            tail.append(shlex.quote(arg))
    return " \\\n    ".join([head, *tail])


def _overrides_from_command(trainer: str, cmd: Sequence[str]) -> list[str]:
    module = _TRAINER_MODULES[trainer]
    if module not in cmd:
        raise CommandLineError(f"the command does not run `-m {module}`: {shlex.join(cmd)}")
    args = list(cmd[list(cmd).index(module) + 1 :])
    bad = [a for a in args if "=" not in a]
    if bad:
        raise CommandLineError(f"trainer arguments must be key=value, got {bad}")
    return args


def _trl_launch(cmd: Sequence[str]) -> tuple[list[str], dict]:
    """(trainer arguments, launch settings) of ``[accelerate launch …] -m imageedit_r1.train.trl_grpo ARGS``."""
    module = _TRAINER_MODULES["trl"]
    if module not in cmd:
        raise CommandLineError(f"the command does not run `-m {module}`: {shlex.join(cmd)}")
    cut = list(cmd).index(module)
    launcher = argparse.ArgumentParser(add_help=False)
    launcher.add_argument("--num_processes", type=int, default=1)
    launcher.add_argument("--num_machines", type=int, default=1)
    launcher.add_argument("--cpu", action="store_true")
    known, _ = launcher.parse_known_args(list(cmd[:cut]))
    return list(cmd[cut + 1 :]), {"num_processes": known.num_processes, "num_machines": known.num_machines,
                                  "use_cpu": known.cpu}


def run_preflight(args: argparse.Namespace) -> int:
    from imageedit_r1.train import preflight

    cmd = list(args.command)
    if not cmd:
        raise CommandLineError("give the trainer command after `--`")
    check_devices = not (args.dry_run or args.no_gpu_check)
    if args.trainer == "trl":
        trainer_args, launch = _trl_launch(cmd)
        _print_dry_run(args, cmd)
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the resolved command only
            report = preflight.check_trl(trainer_args, check_devices=check_devices, **launch)
        return _finish_preflight(args, report)
    overrides = _overrides_from_command(args.trainer, cmd)
    _print_dry_run(args, cmd)
    from imageedit_r1.train.data_files import trainer_problem

    wrong_trainer = trainer_problem(args.trainer)
    if wrong_trainer and args.trainer == "verl":  # verl's own config cannot even be composed
        print_error(wrong_trainer)
        return 2
    try:
        if args.trainer == "easyr1":
            config = preflight.load_easyr1_config(overrides)
            report = preflight.check_easyr1(config, check_devices=check_devices)
            if wrong_trainer:
                report.fail(wrong_trainer)
        else:
            # verl prints its progress to stdout; keep stdout for the resolved command only.
            with contextlib.redirect_stdout(sys.stderr):
                config = preflight.compose_verl_config(overrides)
                report = preflight.check_verl(config, check_devices=check_devices)
    except preflight.PreflightError as exc:
        print_error(exc)
        return 2
    return _finish_preflight(args, report)


def _print_dry_run(args: argparse.Namespace, cmd: Sequence[str]) -> None:
    """A dry run shows the command it would launch first, whatever the checks then find."""
    if args.dry_run:
        print(f"# {args.trainer}: the command a launch would run (dry run; GPUs not checked):")
        print(_format_command(cmd, flags=args.trainer == "trl"), flush=True)


def _finish_preflight(args: argparse.Namespace, report) -> int:
    from imageedit_r1.train import preflight

    try:
        report.raise_if_failed()
    except preflight.PreflightError as exc:
        print_error(exc)
        return 2
    for note in report.notes:
        print(note if note.startswith("warning: ") else f"note: {note}", file=sys.stderr)
    if args.dry_run:
        print(f"# {args.trainer} launch checked: no problem found")
    return 0


def run_curves(args: argparse.Namespace) -> int:
    from imageedit_r1.train import curves

    try:
        curves.output_format(args.out)  # an extension matplotlib cannot write stops before any log is read
        series = curves.load_metrics(args.logs, rescore=not args.no_rescore)
        out = curves.plot_reward_curves(series, args.out, title=args.title, smooth=args.smooth)
    except (curves.MetricLogError, ValueError) as exc:
        print_error(exc)
        return 2
    for name, s in series.items():
        print(f"{name}: {len(s.steps)} points, steps {s.steps[0]}..{s.steps[-1]}, last {s.values[-1]:.3f}")
    print(f"wrote {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from imageedit_r1.image_budget import ImageBudget, ImageBudgetError
    from imageedit_r1.train import export

    try:
        budget = ImageBudget(args.min_pixels, args.max_pixels)
    except ImageBudgetError as exc:
        print_error(f"image budget: {exc}")
        return 2
    try:
        folder = export.export_checkpoint(
            args.trainer,
            args.local_dir,
            args.out,
            easyr1_dir=args.easyr1_dir,
            python=args.python,
            check=not args.no_check,
            device=args.device,
            base_model=args.base_model,
            image_budget=budget,
        )
    except export.ExportError as exc:
        print_error(exc)
        return 2
    print(f"exported {folder}")
    return 0


def run_budget(args: argparse.Namespace) -> int:
    from imageedit_r1.data.export import max_prompt_length
    from imageedit_r1.image_budget import DEFAULT_BUDGET, ImageBudget, ImageBudgetError

    try:
        budget = ImageBudget(
            DEFAULT_BUDGET.min_pixels if args.min_pixels is None else args.min_pixels,
            DEFAULT_BUDGET.max_pixels if args.max_pixels is None else args.max_pixels,
        )
    except ImageBudgetError as exc:
        print_error(f"image budget: {exc}")
        return 2
    values = {
        "MIN_PIXELS": budget.min_pixels,
        "MAX_PIXELS": budget.max_pixels,
        "MAX_IMAGE_TOKENS": budget.max_image_tokens,
        "MAX_PROMPT_LENGTH": max_prompt_length(budget),
    }
    if args.shell:
        print("\n".join(f"{key}={value}" for key, value in values.items()))
    else:
        print(f"image budget: {budget}")
        print(f"max_prompt_length: {values['MAX_PROMPT_LENGTH']} (largest image + the decomposition prompt + a request)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imageedit_r1.train",
        description="Training utilities for the ImageEdit-R1 decomposition agent (GRPO on EasyR1 or verl).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command_name", required=True)

    pre = sub.add_parser(
        "preflight",
        help="check a trainer command line (keys, batch arithmetic, files, GPUs) before launching it",
        description="Checks the overrides of a trainer command against the trainer's config and constraints. "
        "EasyR1: keys against the key list read from its source, batch divisibility, rollout.n > 1. "
        "verl: composes verl's own hydra config and runs its validate_config. TRL: parses the flags with "
        "TRL's own parser and GRPOConfig checks, generation-batch arithmetic for accelerate's process count, "
        "reward weights, data columns. All: data files, model path, and (unless --dry-run/--no-gpu-check) "
        "the visible GPU count.",
    )
    pre.add_argument("trainer", choices=sorted(_TRAINER_MODULES), help="which trainer the command runs")
    pre.add_argument("--dry-run", action="store_true",
                     help="print the command first, then check it (GPUs not counted); exit 2 when a check fails")
    pre.add_argument("--no-gpu-check", action="store_true", help="do not count visible GPUs")
    pre.set_defaults(func=run_preflight)
    pre.epilog = (
        "usage: preflight easyr1 [--dry-run] -- python3 -m verl.trainer.main config=... key=value ...\n"
        "       preflight trl [--dry-run] -- python3 -m accelerate.commands.launch [...] "
        "-m imageedit_r1.train.trl_grpo --flag value ..."
    )

    cur = sub.add_parser(
        "curves",
        help="plot reward components over training steps (the format by --out's extension: png, pdf, svg, ...)",
        description="Reads EasyR1's file logger (experiment_log.jsonl), verl's file logger "
        "(VERL_FILE_LOGGER_PATH JSONL), verl's console output (step:N - key:value lines), verl's "
        "rollout dumps (trainer.rollout_data_dir: <step>.jsonl), or TRL's logs (trainer_state.json "
        "log_history, or the metrics.jsonl of python -m imageedit_r1.train.trl_grpo; an output folder "
        "works too), and plots overall, format, action, subject and goal reward over steps.",
    )
    cur.add_argument("logs", nargs="+", help="log files, or a rollout_data_dir / checkpoint / TRL output directory")
    cur.add_argument("--out", default="curves.png",
                     help="figure to write, format by extension: png, pdf, svg, tif, jpg, ... (default: curves.png)")
    cur.add_argument("--title", default="Decomposition agent: training rewards")
    cur.add_argument("--smooth", type=int, default=1, help="moving-average window in steps (default: 1 = none)")
    cur.add_argument(
        "--no-rescore",
        action="store_true",
        help="for verl rollout dumps, plot only the logged score instead of recomputing the components",
    )
    cur.set_defaults(func=run_curves)

    exp = sub.add_parser(
        "export-checkpoint",
        help="merge a trained FSDP checkpoint into a Hugging Face folder and check that it loads",
        description="Runs the trainer's own merger (EasyR1: scripts/model_merger.py; verl: python -m "
        "verl.model_merger merge --backend fsdp; TRL: copies full weights without the optimizer state, or "
        "merges a LoRA adapter into its base with peft), writes the result to --out and checks it: config, "
        "processor, weights, and one forward pass on an image and a request.",
    )
    exp.add_argument("--trainer", choices=["easyr1", "verl", "trl"], required=True)
    exp.add_argument(
        "--local-dir", required=True,
        help="EasyR1/verl: the checkpoint's actor folder, .../global_step_N/actor; TRL: .../checkpoint-N or the output folder",
    )
    exp.add_argument("--out", required=True, help="target Hugging Face folder")
    exp.add_argument(
        "--base-model", default=None,
        help="TRL LoRA: the base model to merge into (default: the adapter's base_model_name_or_path)",
    )
    exp.add_argument("--easyr1-dir", default=None, help="EasyR1 source checkout (default: $EASYR1_DIR)")
    exp.add_argument("--python", default=sys.executable, help="interpreter that has the trainer installed")
    exp.add_argument("--device", default="auto", help="device for the load check: auto, cpu, cuda")
    exp.add_argument("--no-check", action="store_true", help="skip the load check")
    from imageedit_r1.image_budget import DEFAULT_BUDGET

    exp.add_argument("--min-pixels", type=int, default=DEFAULT_BUDGET.min_pixels,
                     help="image budget the agent was trained with, written into the processor config "
                     f"(default {DEFAULT_BUDGET.min_pixels})")
    exp.add_argument("--max-pixels", type=int, default=DEFAULT_BUDGET.max_pixels,
                     help=f"(default {DEFAULT_BUDGET.max_pixels})")
    exp.set_defaults(func=run_export)

    bud = sub.add_parser(
        "budget",
        help="print the image budget and the max_prompt_length it needs (the recipes read this)",
        description="The image budget (min/max pixels; default the EasyR1 recipe's, from imageedit_r1/image_budget.py) "
        "and the trainers' max_prompt_length derived from it: the largest image's tokens, the decomposition prompt "
        "and room for a request. The recipes pass these to the trainer; export with the same budget.",
    )
    bud.add_argument("--min-pixels", type=int, default=None)
    bud.add_argument("--max-pixels", type=int, default=None)
    bud.add_argument("--shell", action="store_true", help="print NAME=value lines for a shell to eval")
    bud.set_defaults(func=run_budget)

    chk = sub.add_parser("check-model", help="check that a Hugging Face folder loads and runs (no merge)")
    chk.add_argument("folder")
    chk.add_argument("--device", default="auto")
    chk.set_defaults(func=run_check)
    from imageedit_r1.cli_common import add_common_flags

    add_common_flags(parser, sub)
    return parser


def run_check(args: argparse.Namespace) -> int:
    from imageedit_r1.train import export

    try:
        result = export.check_model_folder(args.folder, device=args.device)
    except export.ExportError as exc:
        print_error(exc)
        return 2
    print(result.summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` is the trainer's command line, passed through untouched.
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    args.command = command
    try:
        return args.func(args)
    except CommandLineError as exc:
        print_error(exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
