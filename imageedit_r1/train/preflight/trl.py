"""TRL's preflight: the flags parsed by TRL's own parser and ``GRPOConfig``, the batch arithmetic
for the launched processes, the reward weights, data columns, model path and GPUs."""

from __future__ import annotations

from collections.abc import Sequence

from imageedit_r1.train.preflight.common import (
    Report,
    check_gpus,
    check_model_path,
    check_one_step,
    positive_int,
)


def _per_device_batch(argv: Sequence[str]) -> int:
    """``--per_device_train_batch_size`` as TRL's parser will read it: the last flag, else the
    ``--config`` file's value, else GRPOConfig's default."""
    value = None
    for index, arg in enumerate(argv[:-1]):
        if arg == "--per_device_train_batch_size":
            value = argv[index + 1]
        elif arg == "--config" and value is None:
            import yaml

            try:
                with open(argv[index + 1], encoding="utf-8") as handle:
                    value = (yaml.safe_load(handle) or {}).get("per_device_train_batch_size")
            except (OSError, yaml.YAMLError, AttributeError):
                value = None
    if value is None:
        from trl import GRPOConfig

        value = GRPOConfig.__dataclass_fields__["per_device_train_batch_size"].default
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def _rows(files: Sequence[str]) -> int | None:
    from imageedit_r1.train.data_files import read_data_file

    counts = [read_data_file(str(path)) for path in files]
    return sum(info.rows for info in counts if info is not None) if counts and None not in counts else None


def _fitting(rows: int, generations: int, micro: int, processes: int) -> str | None:
    """The largest batch of at most ``rows`` prompts whose completions split evenly over the
    processes in micro-batches (the largest micro-batch up to ``micro``), as settings."""
    for prompts in range(rows, 0, -1):
        for size in range(micro, 0, -1):
            if (prompts * generations) % (size * processes) == 0:
                steps = prompts * generations // (size * processes)
                return (f"{prompts} prompts x {generations} generations fit: ROLLOUT_BATCH_SIZE={prompts} "
                        f"MICRO_BATCH_SIZE={size} in the recipe (--per_device_train_batch_size {size} "
                        f"--gradient_accumulation_steps {steps})")
    return None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def check_trl(
    argv: Sequence[str],
    *,
    num_processes: int = 1,
    num_machines: int = 1,
    use_cpu: bool = False,
    check_files: bool = True,
    check_devices: bool = True,
) -> Report:
    """TRL's own argument parsing and ``GRPOConfig`` checks, the batch arithmetic for
    ``num_processes`` processes, the reward weights, data columns, model path and GPUs."""
    import contextlib
    import io

    from imageedit_r1.integrations.trl import reward_weights
    from imageedit_r1.train.trl_grpo import check_columns, parse_args

    report = Report()
    argv = argv_given = list(argv)
    if not use_cpu and "--use_cpu" not in argv and not _cuda_available():
        # Checked on a machine without GPUs (a login node, a dry run): TrainingArguments would refuse
        # bf16 here, not on the GPUs; whether GPUs are there is the GPU check's job below.
        argv += ["--use_cpu", "true"]
    processes = num_processes if isinstance(num_processes, int) and num_processes > 0 else 1
    if processes > 1:
        # GRPOConfig checks its generation batch for the world size of the parsing process (1 here):
        # parse with the whole job's batch per step, so TRL's own check sees the launched job's numbers.
        argv += ["--per_device_train_batch_size", str(_per_device_batch(argv) * processes)]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            data_args, config, model_args = parse_args(argv)
    except SystemExit:  # argparse: unknown or malformed flags
        message = stderr.getvalue().strip().splitlines()
        report.fail(f"TRL rejected the arguments: {message[-1] if message else 'invalid arguments'}")
        return report
    except (ValueError, TypeError) as exc:  # GRPOConfig.__post_init__ and TrainingArguments checks
        report.fail(f"TRL rejected the arguments: {exc}")
        return report

    spg = config.steps_per_generation or config.gradient_accumulation_steps
    report.notes.append(
        f"{config.generation_batch_size // config.num_generations} prompts x {config.num_generations} generations "
        f"per generation batch on {processes} process(es), {spg} accumulation step(s) each"
    )
    try:
        reward_weights(config.reward_weights)
    except ValueError as exc:
        report.fail(f"--reward_weights: {exc}")
    if not data_args.train_files:
        report.fail("--train_files is not set: point it at the exported TRL parquet")
    try:
        data_args.image_budget  # noqa: B018 - validation on construction
    except ValueError as exc:
        report.fail(f"image budget (--min_pixels/--max_pixels): {exc}")
    if model_args.use_peft:
        try:
            import peft  # noqa: F401
        except ImportError:
            report.fail("--use_peft needs peft: pip install 'imageedit-r1[trl]'")
    if config.use_vllm and config.vllm_mode == "server":
        report.notes.append(
            f"vLLM server mode: start `trl vllm-serve --model {model_args.model_name_or_path}` on "
            f"{config.vllm_server_host}:{config.vllm_server_port} first, on GPUs not used for training"
        )
    if check_files:
        problems = check_columns(list(data_args.train_files) + list(data_args.val_files))
        for problem in problems:
            report.fail(problem)
        if not problems:
            prompts = config.generation_batch_size // config.num_generations
            check_one_step(report, "--train_files", _rows(data_args.train_files), "prompts per generation batch",
                           prompts, lambda rows: _fitting(rows, config.num_generations,
                                                          _per_device_batch(argv_given), processes))
        check_model_path(report, "--model_name_or_path", model_args.model_name_or_path)
    positive_int(report, "num_processes", num_processes)
    machines = positive_int(report, "num_machines", num_machines)
    if not use_cpu and processes and machines:
        if processes % machines:
            report.fail(f"num_processes ({processes}) must be divisible by num_machines ({machines})")
        else:
            check_gpus(report, processes // machines, machines, check_devices=check_devices)
    return report
