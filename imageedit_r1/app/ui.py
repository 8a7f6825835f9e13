"""The Gradio page: image and request in, the plan shown and editable, the edit out.

Layout: the input (upload or a sample drawn in code), the request and the run settings on the
left; the plan on the right (the decomposition's actions, subjects and goals, then one field per
sub-request with buttons to move it up or down or remove it, and one to add a sub-request);
below, before and after side by side, the attempts so far, the downloads and the trace.

Two API endpoints serve ``gradio_client`` (docs/app.md): ``/plan`` (image, request, mode → the
plan as a dict) and ``/execute`` (image, plan, editor, seed, steps → edited image, trace); they
raise an error carrying the page's sentence. The page's own buttons call private endpoints that
never raise for a refusal: the sentence goes to the status line under the buttons (which also
carries the progress: each stage, each denoising step) and the other panels keep what they
showed. Files the page shows or offers for download are linked into the upload folder (Gradio
serves nothing else), so any ``--output-dir`` works. Agent and editor calls share one
concurrency group (``gpu``) of size one, so two users never run models on one accelerator at
once; the rest wait in Gradio's queue, whose length the app bounds.
"""

from __future__ import annotations

import html
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr

from imageedit_r1.app.service import AppError, EditService
from imageedit_r1.pipeline.config import MODES
from imageedit_r1.pipeline.plan import Plan
from imageedit_r1.sample_images import SAMPLE_REQUESTS, sample_image

MAX_ROWS = 12  # sub-request fields on the page (the sequencing agent writes far fewer)
MAX_HISTORY = 12
SAMPLE_SIZE = (768, 512)
GPU = "gpu"  # the concurrency group every model call joins
SHOW_STATUS = "() => { document.getElementById('status')?.scrollIntoView({block: 'nearest'}); }"

DEMO_NOTE = ("**Offline demo:** tiny random-weight models built on this machine. The agents' answers "
             "are gibberish (the fallbacks take over, as the plan says) and the edited image is noise.")


def _upload_path(payload) -> str | None:
    """The stored upload's path from the image component's raw payload.

    The app's events skip Gradio's preprocessing (``preprocess=False``): Gradio's image
    preprocessing opens the file before any handler runs and words a corrupt file or a bomb as a
    generic error. Gradio still refuses, before this, any path that was not uploaded; the app
    then reads the file itself, within bounds (``imageedit_r1.app.uploads``).
    """
    if isinstance(payload, dict):
        return payload.get("path")
    return payload


def _cell(text: str) -> str:
    """Model text inside a Markdown table cell: no pipes, no line breaks, no HTML."""
    return html.escape(" ".join(str(text).split())).replace("|", "\\|")


def _decomposition_markdown(plan: Plan) -> str:
    lines = ["### Plan"]
    if plan.decomposition is None:
        lines.append("No decomposition: the editor receives the request as it is "
                     f"(mode `{plan.mode}`).")
    else:
        d = plan.decomposition
        cells = [", ".join(_cell(item) for item in items) or "—" for items in (d.actions, d.subjects, d.goals)]
        lines += ["| Actions | Subjects | Goals |", "|---|---|---|", f"| {' | '.join(cells)} |"]
    for fallback in plan.record.get("fallbacks", []):
        lines.append(f"\n*Note: the {fallback['stage']} stage used the `{fallback['used']}` fallback "
                     f"({_cell(str(fallback.get('reason', ''))[:160])}).*")
    lines.append("\nEdit, add, remove or reorder the sub-requests below, then press **Edit**.")
    return "\n".join(lines)


def _row_updates(texts: list[str], count: int) -> list[Any]:
    """Values for every field, then visibility for every row."""
    texts = list(texts[:count]) + [""] * (MAX_ROWS - min(count, len(texts)))
    return [*[gr.Textbox(value=text) for text in texts[:MAX_ROWS]],
            *[gr.Row(visible=i < count) for i in range(MAX_ROWS)]]


def _page_error(exc: Exception) -> gr.Error:
    # Gradio renders an error's message as HTML: escape it, it may quote the user's own text.
    return gr.Error(html.escape(str(exc), quote=False), duration=None, print_exception=False)


def _status_error(what: str, problem) -> str:
    """A refusal as the status line shows it: the sentence, escaped (it may quote the user's text)."""
    return f"**{what}:** {html.escape(str(problem), quote=False)}"


# Formats every browser draws; a before image in another (TIFF, BMP) is shown as a PNG.
_BROWSER_FORMATS = ("PNG", "JPEG", "MPO", "WEBP")


def _served_path(folder: str, name: str) -> Path:
    """A new path in ``folder``, the upload folder: the only one Gradio serves (the operator's output
    folder can lie anywhere), and one the app keeps within its quota."""
    target = Path(folder) / "imageedit-r1-served" / secrets.token_hex(8) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _served(path, folder: str) -> str:
    """``path`` linked (or copied, across file systems) into the upload folder."""
    target = _served_path(folder, Path(path).name)
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    return str(target)


def _served_before(upload_path: str, image, folder: str) -> str:
    """The before panel's file: the upload itself when browsers draw its format, else a PNG."""
    from PIL import Image

    with Image.open(upload_path) as header:
        if header.format in _BROWSER_FORMATS:
            return upload_path
    target = _served_path(folder, "before.png")
    image.save(target, format="PNG", compress_level=1)
    return str(target)


def build_app(service: EditService, *, title: str = "ImageEdit-R1", demo_mode: bool = False) -> gr.Blocks:
    default_steps = service.default_steps()
    served_folder = service.settings.upload_roots[0]  # where Gradio stores uploads and serves files from

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        plan_state = gr.State(None)  # the current plan, as Plan.to_dict()
        count_state = gr.State(0)  # how many sub-request fields are in use
        history_state = gr.State([])  # [(image path, caption)] of this session's attempts

        gr.Markdown(f"# {title}\nDecompose an edit request, check and correct the plan, then edit.")
        if demo_mode:
            gr.Markdown(DEMO_NOTE, elem_id="demo-note")
        with gr.Row():
            with gr.Column(scale=1):  # what to edit, and Plan: the first action on an empty page
                image_in = gr.Image(label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                    elem_id="input-image", height=280)
                sample = gr.Dropdown(choices=list(SAMPLE_REQUESTS), value=None, label="…or a sample image",
                                     elem_id="sample")
                request = gr.Textbox(label="Edit request", lines=3, max_length=2000, elem_id="request",
                                     placeholder="e.g. Change the color of her coat to scarlet and blur the background")
                mode = gr.Dropdown(choices=list(MODES), value=service.config.mode, label="Mode", elem_id="mode")
                plan_btn = gr.Button("Plan", variant="primary", elem_id="plan-button")
            with gr.Column(scale=1):  # the plan, how to run it, Edit, and what is happening now
                plan_md = gr.Markdown("### Plan\nPress **Plan** to see how the request is decomposed.",
                                      elem_id="plan")
                rows, fields, ups, downs, removes = [], [], [], [], []
                for i in range(MAX_ROWS):
                    with gr.Row(visible=False, equal_height=True) as row:
                        fields.append(gr.Textbox(label=f"Sub-request {i + 1}", scale=8, max_length=2000,
                                                 elem_id=f"sub-request-{i}"))
                        ups.append(gr.Button("↑", size="sm", scale=0, min_width=40, elem_id=f"up-{i}"))
                        downs.append(gr.Button("↓", size="sm", scale=0, min_width=40, elem_id=f"down-{i}"))
                        removes.append(gr.Button("✕", size="sm", scale=0, min_width=40, elem_id=f"remove-{i}"))
                    rows.append(row)
                add_btn = gr.Button("+ Add a sub-request", size="sm", elem_id="add-button")
                with gr.Row():
                    editor = gr.Dropdown(choices=[service.editor_name], value=service.editor_name, label="Editor",
                                         interactive=False, elem_id="editor", info="chosen by the app's operator")
                    seed = gr.Number(value=service.config.seed if service.config.seed is not None else 0,
                                     precision=0, minimum=0, label="Seed", elem_id="seed")
                    steps = gr.Slider(1, 100, value=default_steps or 28, step=1, label="Steps (diffusion editors)",
                                      elem_id="steps")
                edit_btn = gr.Button("Edit", variant="secondary", elem_id="edit-button")
                # Under the buttons: the progress of a running step (each stage, each denoising
                # step), then its outcome or, for a refusal, its sentence.
                status = gr.Markdown("Upload an image or pick a sample, type the request, then press **Plan**.",
                                     elem_id="status", min_height=48, container=True)
        with gr.Row():
            before = gr.Image(label="Before", interactive=False, type="filepath", elem_id="before")
            after = gr.Image(label="After", interactive=False, type="filepath", elem_id="after")
        history = gr.Gallery(label="Attempts", columns=6, fit_columns=False, object_fit="contain", height="auto",
                             preview=False, interactive=False, elem_id="history")
        with gr.Row():
            image_file = gr.File(label="Download the edited image", interactive=False, elem_id="download-image")
            trace_file = gr.File(label="Download the trace", interactive=False, elem_id="download-trace")
        with gr.Accordion("Trace", open=False):
            trace_json = gr.JSON(label="Trace", elem_id="trace")

        # API-only components: the plan in and out, the edited image out.
        api_plan_out = gr.JSON(visible=False)
        api_plan_in = gr.JSON(visible=False)
        api_image_out = gr.Image(visible=False, type="filepath")
        api_trace_out = gr.JSON(visible=False)
        api_plan_btn = gr.Button(visible=False)
        api_execute_btn = gr.Button(visible=False)
        row_outputs = [*fields, *rows]

        # ------------------------------------------------------------------ handlers

        def pick_sample(name):
            if name not in SAMPLE_REQUESTS:
                return gr.skip(), gr.skip()
            return sample_image(name, SAMPLE_SIZE), SAMPLE_REQUESTS[name]

        def ui_plan(upload, text, mode_value, progress=gr.Progress()):
            try:
                _, plan = service.plan(_upload_path(upload), text, mode_value, progress=progress)
            except AppError as exc:  # a sentence in the status line; the panels keep what they showed
                return [gr.skip()] * 3 + [_status_error("Could not plan", exc)] + [gr.skip()] * (2 + 2 * MAX_ROWS)
            subs = plan.sub_requests
            shown = subs[:MAX_ROWS]
            note = f"Plan ready: {len(subs)} sub-request(s), mode `{plan.mode}`. Check them, then press **Edit**."
            if len(subs) > MAX_ROWS:
                note += f" Only the first {MAX_ROWS} fit on this page; the rest are dropped if you edit."
            return [plan.to_dict(), len(shown), _decomposition_markdown(plan), note,
                    gr.Button(variant="secondary"), gr.Button(variant="primary"), *_row_updates(shown, len(shown))]

        def move(i, delta):
            def handler(count, *texts):
                texts = list(texts)
                j = i + delta
                if 0 <= j < count:
                    texts[i], texts[j] = texts[j], texts[i]
                return _row_updates(texts, count)
            return handler

        def remove(i):
            def handler(count, *texts):
                texts = list(texts[:count])
                if i < count:
                    texts.pop(i)
                return [count - 1 if i < count else count, *_row_updates(texts, len(texts))]
            return handler

        def add(count, *texts):
            if count >= MAX_ROWS:
                raise gr.Error(f"at most {MAX_ROWS} sub-requests fit on this page", print_exception=False)
            texts = list(texts[:count]) + [""]
            return [count + 1, *_row_updates(texts, count + 1)]

        def ui_execute(values, progress=gr.Progress()):
            # ``values`` maps each input component to its value: a fixed signature, so Gradio sees
            # ``progress`` (it does not look past a ``*args``) and the page shows each step.
            started = time.perf_counter()  # the figure shown is the wall time of the whole step
            upload, plan_dict, count = values[image_in], values[plan_state], values[count_state]
            texts = [values[field] for field in fields]
            mode_value, editor_name, seed_value, steps_value, attempts = (
                values[item] for item in (mode, editor, seed, steps, history_state))
            try:
                if not plan_dict:
                    raise AppError("press Plan first: the editor runs on the plan you see, and there is none yet")
                plan = Plan.from_dict(plan_dict)
                if plan.mode != "original" or count:
                    plan.set_sub_requests([text or "" for text in texts[:count]])
                plan.set_mode(mode_value)
                outcome = service.execute(_upload_path(upload), plan, editor=editor_name, seed=seed_value,
                                          steps=steps_value, progress=progress)
            except ValueError as exc:  # an AppError, or a PlanError from the fields (empty or overlong)
                hint = ": fill it in, or remove it with ✕" if str(exc).endswith("is empty") else ""
                return [gr.skip()] * 7 + [_status_error("Could not edit", f"{exc}{hint}")]
            trace = outcome.trace
            changed = "changed plan" if trace["plan"]["changed"] else "agents' plan"
            caption = f"#{len(attempts) + 1} · {trace['editor'].get('name')} · seed {trace['seeds'][0]} · {changed}"
            shown = [_served(path, served_folder) for path in (outcome.image_path, outcome.trace_path)]
            before_shown = _served_before(_upload_path(upload), outcome.before, served_folder)
            attempts = [*attempts, (shown[0], caption)][-MAX_HISTORY:]
            note = (f"Edited in {time.perf_counter() - started:.1f} s ({changed}, "
                    f"{len(trace['instructions'])} editor call(s)).")
            return [before_shown, shown[0], attempts, attempts, shown[0], shown[1], trace, note]

        def api_plan(upload, text, mode_value, progress=gr.Progress()):
            try:
                return service.plan(_upload_path(upload), text, mode_value, progress=progress)[1].to_dict()
            except AppError as exc:
                raise _page_error(exc) from None

        def api_execute(upload, plan_dict, editor_name, seed_value, steps_value, progress=gr.Progress()):
            try:
                outcome = service.execute(_upload_path(upload), plan_dict, editor=editor_name, seed=seed_value, steps=steps_value,
                                          progress=progress)
            except AppError as exc:
                raise _page_error(exc) from None
            return _served(outcome.image_path, served_folder), outcome.trace

        # ------------------------------------------------------------------ wiring

        private = {"api_visibility": "private"}
        for button in (plan_btn, edit_btn):  # the progress shows where the person is looking
            button.click(None, js=SHOW_STATUS, **private)
        sample.change(pick_sample, [sample], [image_in, request], **private, concurrency_limit=None)
        plan_btn.click(ui_plan, [image_in, request, mode],
                       [plan_state, count_state, plan_md, status, plan_btn, edit_btn, *row_outputs],
                       concurrency_id=GPU, concurrency_limit=1, preprocess=False, show_progress_on=[status], **private)
        for i in range(MAX_ROWS):
            ups[i].click(move(i, -1), [count_state, *fields], row_outputs, concurrency_limit=None, **private)
            downs[i].click(move(i, +1), [count_state, *fields], row_outputs, concurrency_limit=None, **private)
            removes[i].click(remove(i), [count_state, *fields], [count_state, *row_outputs],
                             concurrency_limit=None, **private)
        add_btn.click(add, [count_state, *fields], [count_state, *row_outputs], concurrency_limit=None, **private)
        edit_btn.click(ui_execute,
                       {image_in, plan_state, count_state, *fields, mode, editor, seed, steps, history_state},
                       [before, after, history, history_state, image_file, trace_file, trace_json, status],
                       concurrency_id=GPU, concurrency_limit=1, preprocess=False, show_progress_on=[status], **private)
        api_plan_btn.click(api_plan, [image_in, request, mode], [api_plan_out], api_name="plan",
                           concurrency_id=GPU, concurrency_limit=1, preprocess=False)
        api_execute_btn.click(api_execute, [image_in, api_plan_in, editor, seed, steps], [api_image_out, api_trace_out],
                              api_name="execute", concurrency_id=GPU, concurrency_limit=1, preprocess=False)
    return app
