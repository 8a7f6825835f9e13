"""The app's work, with no web code: plan, execute, word errors for the page.

``EditService`` wraps ``ImageEditR1``: ``plan`` runs the decomposition and sequencing agents,
``execute`` runs the operator's editor (the config's, and no other: a client cannot make the
server load other weights or spend other keys) on a (possibly changed) plan and writes the
edited image and its trace to the app's output folder for download. Every failure becomes an ``AppError`` whose
message is safe to show in a page: no stack trace, and no secret. Messages, plans and traces go
through the project's one secret policy (``imageedit_r1.masking``): every key the app's models can
reach, by value, and the app's login passwords.
"""

from __future__ import annotations

import json
import logging
import secrets
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageedit_r1.app.uploads import UploadLimits, UploadRefused, read_upload
from imageedit_r1.masking import mask
from imageedit_r1.pipeline.config import MODES, PipelineConfig
from imageedit_r1.pipeline.plan import MAX_TEXT_CHARS, Plan, PlanError
from imageedit_r1.request_limits import UploadStore, protect_secrets
from imageedit_r1.store import atomic_save_image, atomic_write_json

logger = logging.getLogger(__name__)

MAX_SEED = 2**31 - 1
MAX_STEPS = 200
MAX_PLAN_BYTES = 4 * 2**20  # a plan with its agents' record is a few kB; this bounds what a client may send


class AppError(ValueError):
    """A failure worded for the page; ``trace`` holds a failed run's (masked) trace, if any."""

    def __init__(self, message: str, trace: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.trace = trace


@dataclass
class AppSettings:
    config: PipelineConfig = field(default_factory=PipelineConfig)
    limits: UploadLimits = field(default_factory=UploadLimits)
    upload_roots: list[str] = field(default_factory=list)  # where the web framework stores uploads
    upload_store: UploadStore | None = None  # keeps that folder within its quota
    output_dir: str | None = None  # edited images and traces for download (default: a temp folder)
    auth_passwords: list[str] = field(default_factory=list)
    demo: bool = False


@dataclass
class Outcome:
    """One finished edit: the images, the masked trace, and the files written for download."""

    before: Any
    after: Any
    trace: dict[str, Any]
    image_path: Path
    trace_path: Path


class EditService:
    """Plans and edits for the app with the operator's agents and editor, loaded once."""

    def __init__(self, settings: AppSettings, *, planner=None, editor=None) -> None:
        """``planner`` (an ``ImageEditR1``) and ``editor`` (the configured editor) may be given
        ready-made; by default both are built from ``settings.config`` on first use."""
        from imageedit_r1.pipeline.core import ImageEditR1

        self.settings = settings
        self.config = settings.config
        protect_secrets(settings.auth_passwords, self.config)
        self.planner = planner or ImageEditR1(config=self.config)
        self._editor = editor
        self._lock = threading.Lock()
        self._first_plan = True
        self.output_dir = Path(settings.output_dir or tempfile.mkdtemp(prefix="imageedit-r1-app-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ choices shown in the page

    @property
    def editor_name(self) -> str:
        """The one editor this app runs: the operator's (``editor.name`` in the config)."""
        return self.config.editor.name

    def default_steps(self) -> int | None:
        """The editor's denoising steps (config, else the editor's default); None for hosted editors."""
        from imageedit_r1.agents.editors import editor_class

        if self.config.editor.options.get("num_inference_steps"):
            return int(self.config.editor.options["num_inference_steps"])
        try:
            return getattr(editor_class(self.editor_name), "default_steps", None)
        except (ValueError, ImportError):
            return None

    # ------------------------------------------------------------------ the work

    def load_upload(self, value):
        return read_upload(value, self.settings.limits, self.settings.upload_roots)

    def plan(self, upload, request: str, mode: str | None = None, progress=None) -> tuple[Any, Plan]:
        """The agents' plan for an uploaded image; returns (image, plan). Raises ``AppError``."""
        image = self._guard(lambda: self.load_upload(upload))
        request = self._check_request(request)
        mode = self._check_mode(mode)
        if progress is not None:  # a gr.Progress is falsy (it has a length)
            progress(0.05, "Planning: the decomposition and sequencing agents read the image"
                     + (" (the first plan loads the model)" if self._first_plan else ""))
        with self._lock:
            plan = self._guard(lambda: self.planner.plan(image, request, mode=mode))
        self._first_plan = False
        return image, Plan.from_dict(mask(plan.to_dict()))

    def execute(self, upload, plan: Plan | dict, *, editor: str | None = None, seed: int | None = None,
                steps: int | None = None, progress=None) -> Outcome:
        """Run the operator's editor on ``plan``; write the image and trace for download.

        ``editor`` may name that editor (or be empty); any other name is refused before any work.
        ``progress(fraction, text)`` hears each stage and, for a diffusion editor, each denoising
        step. Raises ``AppError``."""
        from imageedit_r1.pipeline.core import ImageEditR1

        if editor not in (None, "", self.editor_name):
            raise AppError(f"this app runs the {self.editor_name} editor only, not {str(editor)[:80]!r}; "
                           "its operator chooses the editor in the config (editor.name)")
        image = self._guard(lambda: self.load_upload(upload))
        if isinstance(plan, dict) and len(json.dumps(plan, default=str)) > MAX_PLAN_BYTES:
            raise AppError(f"the plan is over {MAX_PLAN_BYTES // 2**20} MiB of JSON; send the one /plan returned")
        plan = self._guard(lambda: (Plan.from_dict(plan) if isinstance(plan, dict) else plan).validate())
        seed = self._check_int(seed, "seed", 0, MAX_SEED)
        steps = self._check_int(steps, "steps", 1, MAX_STEPS)
        if seed is None:
            seed = secrets.randbelow(MAX_SEED)
        report = _EditProgress(progress, self.editor_name)

        with self._lock:
            report.stage(0.02, f"Loading the {self.editor_name} editor (first use)" if self._editor is None
                         else f"Starting the {self.editor_name} editor")
            built = self._guard(self._editor_for)
            if steps is not None and hasattr(built, "num_inference_steps"):
                built.num_inference_steps = steps
            # The planner's verifier, built once and sharing the planner's backends (a local judge
            # can be the decomposer's own model): never a second copy per click.
            verifier = (self._guard(lambda: getattr(self.planner, "verifier", None))
                        if self.config.verify is not None else None)
            runner = ImageEditR1(editor=built, verifier=verifier, config=self.config)
            if hasattr(built, "on_denoise_step"):
                built.on_denoise_step = report.denoised
            try:
                result = self._guard(lambda: runner.execute(image, plan, seed=seed, on_step=report.call))
            finally:
                if hasattr(built, "on_denoise_step"):
                    built.on_denoise_step = None
        report.stage(0.97, "Saving the edited image and its trace")
        trace = mask(result.trace)
        stem = f"edit-{trace['output']['sha256'][:12]}-seed{seed}"
        image_path = atomic_save_image(result.image, self.output_dir / f"{stem}.png", "PNG")
        trace_path = atomic_write_json(self.output_dir / f"{stem}.trace.json", trace)
        return Outcome(before=image, after=result.image, trace=trace, image_path=image_path, trace_path=trace_path)

    # ------------------------------------------------------------------ helpers

    def _editor_for(self):
        """The operator's editor, built on first use."""
        if self._editor is None:
            from imageedit_r1.agents.editors import build_editor

            self._editor = build_editor(self.editor_name, **dict(self.config.editor.options))
        return self._editor

    @staticmethod
    def _check_request(request) -> str:
        if not isinstance(request, str) or not request.strip():
            raise AppError("the edit request is empty: type what to change in the image")
        if len(request) > MAX_TEXT_CHARS:
            raise AppError(f"the edit request is {len(request)} characters long; the limit is {MAX_TEXT_CHARS}")
        return request.strip()

    def _check_mode(self, mode) -> str:
        mode = mode or self.config.mode
        if mode not in MODES:
            raise AppError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        return mode

    @staticmethod
    def _check_int(value, what: str, low: int, high: int) -> int | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value)
        if number is None:
            raise AppError(f"{what} must be a whole number, got {value!r}")
        if not low <= number <= high:
            raise AppError(f"{what} must be between {low} and {high}, got {number}")
        return number

    def _guard(self, work):
        """Run ``work``; turn any failure into an ``AppError`` worded for the page (masked)."""
        from imageedit_r1.pipeline.trace import EditFailed
        from imageedit_r1.unavailable import is_unavailable

        try:
            return work()
        except AppError:
            raise
        except (UploadRefused, PlanError) as exc:
            raise AppError(mask(str(exc))) from None
        except EditFailed as exc:
            raise AppError(mask(str(exc)), trace=mask(exc.trace)) from None
        except Exception as exc:
            if is_unavailable(exc):  # a model, key or package this machine lacks, of any part
                raise AppError(mask(f"cannot run here: {exc}")) from None
            if isinstance(exc, ValueError):
                raise AppError(mask(str(exc))) from None
            # An unforeseen failure: the log gets the stack, the page a sentence.
            logger.exception("unexpected failure in the app")
            raise AppError(mask(f"unexpected error ({type(exc).__name__}): {exc}")) from None


class _EditProgress:
    """The page's progress during an edit: each editor call, and within it each denoising step."""

    def __init__(self, progress, editor: str) -> None:
        self.progress, self.editor = progress, editor
        self.call_index, self.calls, self.instruction = 0, 1, ""

    def stage(self, fraction: float, text: str) -> None:
        if self.progress is not None:
            self.progress(fraction, text)

    def call(self, index: int, total: int, instruction: str) -> None:
        self.call_index, self.calls, self.instruction = index, total, " ".join(instruction.split())[:80]
        self.stage(0.05 + 0.9 * index / total, f"Editing {index + 1}/{total} with {self.editor}: {self.instruction}")

    def denoised(self, step: int, steps: int) -> None:
        done = (self.call_index + step / steps) / self.calls
        self.stage(0.05 + 0.9 * done, f"Editing {self.call_index + 1}/{self.calls} with {self.editor}: "
                   f"denoising step {step}/{steps} · {self.instruction}")
