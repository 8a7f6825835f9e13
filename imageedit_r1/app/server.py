"""Build the app from the command line's settings and serve it behind the front door.

The front door (``imageedit_r1.request_limits.FrontDoor``) runs before Gradio sees a request:
failed logins are throttled per client, a client without a login gets 401 on every route but the
login page and its assets (``PUBLIC_ROUTES``), bodies are bounded before they are read, and the
upload folder is kept within its quota. Gradio's run-history routes are off.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from imageedit_r1.app.service import MAX_PLAN_BYTES, AppSettings, EditService
from imageedit_r1.cli_common import print_error
from imageedit_r1.request_limits import DoorRules, FrontDoor, LoginThrottle, UploadLimits, UploadStore

# Without a login, only the login page and what it loads (the page, the login form, static assets),
# and the start-up call Gradio makes to itself at launch (it runs the app's start-up events once).
PUBLIC_ROUTES = ("/", "/login", "/login/", "/logout", "/favicon.ico", "/theme.css", "/gradio_api/theme.css",
                 "/manifest.json", "/robots.txt", "/gradio_api/login_check", "/gradio_api/login_check/",
                 "/gradio_api/startup-events",
                 "/assets/*", "/static/*", "/svelte/*", "/pwa_icon", "/pwa_icon/*")
UPLOAD_ROUTES = ("/gradio_api/upload",)
LOGIN_ROUTES = ("/login", "/login/")
BODY_BYTES = MAX_PLAN_BYTES + 2**20  # /execute carries the plan; everything else is far smaller


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
    uploads = get_upload_folder()
    store = UploadStore(uploads, max_bytes=int(args.upload_store_mb * 2**20), keep_seconds=args.upload_keep_hours * 3600)
    return AppSettings(config=config, limits=limits, upload_roots=[uploads], upload_store=store,
                       output_dir=args.output_dir, auth_passwords=[password for _, password in auth], demo=args.demo)


def signed_in(scope) -> bool:
    """Whether a request carries the session cookie of a Gradio login (or the app has no login)."""
    from starlette.requests import cookie_parser

    app = scope.get("app")
    if app is None or (getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None):
        return True
    header = next((value for name, value in scope.get("headers", ()) if name == b"cookie"), b"")
    cookies = cookie_parser(header.decode("latin-1"))
    tokens = getattr(app, "tokens", {})
    return any(cookies.get(f"{name}-{app.cookie_id}") in tokens for name in ("access-token", "access-token-unsecure"))


def front_door(limits: UploadLimits, store: UploadStore | None):
    """The app's front door as a Starlette middleware entry for Gradio's FastAPI app."""
    from starlette.middleware import Middleware

    rules = DoorRules(body_bytes=BODY_BYTES, upload_bytes=limits.max_bytes, public_routes=PUBLIC_ROUTES,
                      upload_routes=UPLOAD_ROUTES, login_routes=LOGIN_ROUTES)
    return Middleware(FrontDoor, rules=rules, signed_in=signed_in, throttle=LoginThrottle(), store=store)


def port_in_use(host: str, port: int) -> str | None:
    """The one-line error for a port another program holds, or None when it is free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return None  # an unknown host: the server's own error says so
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            sock.bind(address)
        except OSError:
            return f"port {port} on {host} is in use (another program, or the app already running); " \
                   "choose another with --port"
    return None


def launch(app, *, host: str, port: int, share: bool, auth, limits: UploadLimits, queue_size: int,
           store: UploadStore | None = None, prevent_thread_lock: bool = False):
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
        run_history=False,  # its routes answer without the login and call the Hub with the host's token
        app_kwargs={"middleware": [front_door(limits, store)]},
        prevent_thread_lock=prevent_thread_lock,
    )


def own_upload_folder() -> None:
    """Give this process an upload folder of its own (the app sweeps it), unless the operator chose one."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        folder = tempfile.mkdtemp(prefix="imageedit-r1-app-uploads-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["GRADIO_TEMP_DIR"] = folder


def serve(args, auth) -> int:
    from imageedit_r1.app.ui import build_app

    busy = port_in_use(args.host, args.port)
    if busy:  # before any model is built
        print(f"error: {busy}", file=sys.stderr)
        return 2
    own_upload_folder()
    try:
        settings = build_settings(args, auth)
    except (FileNotFoundError, ValueError) as exc:
        print_error(exc)
        return 2
    service = EditService(settings)
    # A stop (docker stop, kubectl delete) runs the clean-up too: the upload folder, the demo's models.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    title = "ImageEdit-R1 (offline demo)" if args.demo else "ImageEdit-R1"
    app = build_app(service, title=title, demo_mode=args.demo)
    try:
        launch(app, host=args.host, port=args.port, share=args.share, auth=auth, limits=settings.limits,
               queue_size=args.queue_size, store=settings.upload_store)
    except OSError as exc:  # taken while the models loaded
        print(f"error: {port_in_use(args.host, args.port) or exc}", file=sys.stderr)
        return 2
    return 0
