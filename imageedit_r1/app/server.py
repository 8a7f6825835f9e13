"""Build the app from the command line's settings and serve it (loopback, bounded queue, optional login)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from imageedit_r1.app.service import AppSettings, EditService
from imageedit_r1.app.uploads import UploadLimits
from imageedit_r1.cli_common import print_error


def demo_config(work: Path, overrides=()):
    """The offline demo's pipeline config: tiny random-weight models built into ``work`` once the
    config (with ``overrides``) has passed the config door."""
    from imageedit_r1.pipeline.demo import build_demo_models, demo_pipeline_config

    config = demo_pipeline_config(work, overrides)
    print("building tiny random-weight models for the offline demo...", flush=True)
    build_demo_models(work)
    return config


def build_settings(args, auth: list[tuple[str, str]]) -> AppSettings:
    from gradio.utils import get_upload_folder

    from imageedit_r1.pipeline.config import load_pipeline_config

    if args.demo:
        work = Path(tempfile.mkdtemp(prefix="imageedit-r1-app-demo-"))
        atexit.register(shutil.rmtree, work, ignore_errors=True)
        config = demo_config(work, args.overrides)
    else:
        config = load_pipeline_config(args.config, args.overrides)
    limits = UploadLimits(max_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6))
    return AppSettings(config=config, limits=limits, upload_roots=[get_upload_folder()],
                       output_dir=args.output_dir, auth_passwords=[password for _, password in auth], demo=args.demo)


def launch(app, *, host: str, port: int, share: bool, auth, limits: UploadLimits, queue_size: int,
           prevent_thread_lock: bool = False):
    """Queue (bounded) and serve ``app``; explicit arguments override Gradio's environment variables."""
    app.queue(max_size=queue_size, default_concurrency_limit=1)
    return app.launch(
        server_name=host,
        server_port=port,
        share=share,
        auth=auth or None,
        max_file_size=limits.max_bytes,
        show_error=True,  # messages only, never a stack; handlers raise worded errors, so this words framework refusals
        ssr_mode=False,
        allowed_paths=[],
        prevent_thread_lock=prevent_thread_lock,
    )


def serve(args, auth) -> int:
    from imageedit_r1.app.ui import build_app

    try:
        settings = build_settings(args, auth)
    except (FileNotFoundError, ValueError) as exc:
        print_error(exc)
        return 2
    service = EditService(settings)
    title = "ImageEdit-R1 (offline demo)" if args.demo else "ImageEdit-R1"
    app = build_app(service, title=title, demo_mode=args.demo)
    launch(app, host=args.host, port=args.port, share=args.share, auth=auth, limits=settings.limits,
           queue_size=args.queue_size)
    return 0
