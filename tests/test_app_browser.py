"""The app served for real on the tiny random-weight models: gradio_client calls /plan then
/execute; a headless Chromium (Playwright driving Debian's chromium) uploads, plans, changes a
sub-request, edits, and checks the page; refusals arrive as clear messages; the bind is loopback."""

import json
import os
import shutil
import socket
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

from tests.app_fixtures import BLUE, RED, free_port, private_upload_folder, scripted_app, two_tone

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
gradio = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

pytestmark = [pytest.mark.slow]

MAX_BYTES = 400_000
MAX_MEGAPIXELS = 2.0


@pytest.fixture(scope="module", autouse=True)
def folders(tmp_path_factory):
    """Uploads in a folder of this module's own (the app sweeps its upload folder); the system's
    temp folder moved, so that the app's output folder lies outside it and outside the working
    folder, where Gradio would not serve a file by itself."""
    import tempfile

    root = tmp_path_factory.mktemp("app-folders")
    monkey = pytest.MonkeyPatch()
    (root / "tmp").mkdir()
    monkey.setattr(tempfile, "tempdir", str(root / "tmp"))
    with private_upload_folder(root / "uploads"):
        yield SimpleNamespace(root=root, outputs=root / "outputs")
    monkey.undo()


@pytest.fixture(scope="module")
def served(folders):
    from imageedit_r1.app.__main__ import build_parser
    from imageedit_r1.app.server import build_settings, launch
    from imageedit_r1.app.service import EditService
    from imageedit_r1.app.ui import build_app

    monkey = pytest.MonkeyPatch()
    monkey.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # the app's own --host default must win over this
    monkey.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(["--demo", "--port", str(free_port()), "--max-upload-mb", str(MAX_BYTES / 2**20),
                                      "--max-megapixels", str(MAX_MEGAPIXELS), "--queue-size", "4",
                                      "--output-dir", str(folders.outputs)])
    settings = build_settings(args, [])
    app = build_app(EditService(settings), title="ImageEdit-R1 (offline demo)", demo_mode=True)
    launch(app, host=args.host, port=args.port, share=args.share, auth=None, limits=settings.limits,
           queue_size=args.queue_size, store=settings.upload_store, prevent_thread_lock=True)
    yield SimpleNamespace(app=app, url=f"http://127.0.0.1:{args.port}/", port=args.port, args=args)
    app.close()
    monkey.undo()


def test_the_server_binds_loopback_with_a_bounded_queue_and_no_share_link(served):
    assert served.app.server_name == "127.0.0.1" and served.app.share is False
    assert served.app.local_url.startswith("http://127.0.0.1:")
    assert served.app._queue.max_size == 4
    with socket.socket() as sock:  # nothing answers on another interface address of this machine
        sock.settimeout(2)
        other = socket.gethostbyname(socket.gethostname())
        if not other.startswith("127."):
            assert sock.connect_ex((other, served.port)) != 0


def test_gradio_client_plans_then_executes_a_changed_plan(served, tmp_path):
    from gradio_client import Client, handle_file

    path = tmp_path / "in.png"
    two_tone((200, 150)).save(path)
    client = Client(served.url, verbose=False)
    assert {"/plan", "/execute"} <= set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    plan = client.predict(handle_file(str(path)), "Change the color of the car to blue and remove the sign",
                          "multi-turn", api_name="/plan")
    assert plan["mode"] == "multi-turn" and plan["sub_requests"] and plan["decomposition"]["actions"]
    plan["sub_requests"][0] = "Recolor the car to a deep navy blue"
    edited, trace = client.predict(handle_file(str(path)), plan, "flux-kontext", 7, 2, api_name="/execute")
    assert Image.open(edited).size == (200, 150)
    assert trace["status"] == "ok" and trace["sub_requests"][0] == "Recolor the car to a deep navy blue"
    assert trace["plan"]["changed"] is True and trace["seeds"][0] == 7
    assert trace["editor"]["num_inference_steps"] == 2


def _client_error(served, *args, api_name="/plan"):
    from gradio_client import Client

    with pytest.raises(Exception) as info:  # noqa: PT011 - gradio_client's AppError carries the page's message
        Client(served.url, verbose=False).predict(*args, api_name=api_name)
    return str(info.value)


def test_oversized_bomb_corrupt_and_empty_inputs_are_refused_clearly(served, tmp_path):
    from gradio_client import handle_file

    big = tmp_path / "big.png"
    Image.effect_noise((700, 500), 100).convert("RGB").save(big)
    assert big.stat().st_size > MAX_BYTES
    message = _client_error(served, handle_file(str(big)), "x", "single-turn")
    assert f"exceeds the maximum file size of {MAX_BYTES} bytes" in message, message
    # A client that skips that check is refused by the server before the file is stored.
    response = httpx.post(f"{served.url}gradio_api/upload", files={"files": ("big.png", big.read_bytes(), "image/png")},
                          timeout=30)
    assert response.status_code == 413 and "over this server's limit" in response.text, response.text
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(bomb, optimize=True)
    assert "144.0 megapixels; this server accepts at most 2 megapixels" in \
        _client_error(served, handle_file(str(bomb)), "x", "single-turn")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x07" * 300)
    assert "not a readable image" in _client_error(served, handle_file(str(corrupt)), "x", "single-turn")
    assert "no image" in _client_error(served, None, "x", "single-turn")
    good = tmp_path / "ok.png"
    two_tone((64, 48)).save(good)
    assert "request is empty" in _client_error(served, handle_file(str(good)), "   ", "single-turn")


def _raw_call(served, endpoint: str, data: list) -> str:
    """Call an endpoint over plain HTTP, as a hand-written client would; return the event stream."""
    base = f"{served.url}gradio_api/call/{endpoint}"
    event_id = httpx.post(base, json={"data": data}, timeout=30).json()["event_id"]
    return httpx.get(f"{base}/{event_id}", timeout=120).text


@pytest.mark.parametrize("payload", [
    {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
    {"path": "../../../../etc/passwd", "meta": {"_type": "gradio.FileData"}},
    {"path": "/proc/self/environ", "orig_name": "x.png", "meta": {"_type": "gradio.FileData"}},
])
def test_a_server_path_chosen_by_the_caller_is_refused_with_a_message(served, payload):
    stream = _raw_call(served, "plan", [payload, "Recolor the car", "single-turn"])
    assert "event: error" in stream
    error = json.loads(stream.split("event: error", 1)[1].split("data:", 1)[1].strip().splitlines()[0])["error"]
    assert error and "not uploaded by a user" in error
    assert "root:" not in stream  # nothing of the file came back


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_in_the_browser_upload_plan_change_a_sub_request_edit_and_download_the_trace(served, tmp_path):
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect, sync_playwright

    size = (240, 160)
    path = tmp_path / "photo.png"
    two_tone(size).save(path)
    changed = "Recolor the coat to a deep emerald green"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(served.url)
            page.locator("#input-image input[type=file]").set_input_files(str(path))
            expect(page.locator("#input-image img")).to_be_visible(timeout=30_000)
            page.locator("#request textarea").fill("Change the color of her coat and possibly hair to scarlet")
            page.locator("#plan-button").click()
            first = page.locator("#sub-request-0 textarea")
            expect(first).to_be_visible(timeout=120_000)
            expect(page.locator("#plan")).to_contain_text("Actions")
            proposed = first.input_value()
            assert proposed.strip()
            first.fill(changed)
            # add, reorder and remove work on the fields themselves, before any edit
            page.locator("#add-button").click()
            second = page.locator("#sub-request-1 textarea")
            expect(second).to_be_visible()
            second.fill("Add a small red scarf")
            page.locator("#up-1").click()
            expect(first).to_have_value("Add a small red scarf")
            expect(second).to_have_value(changed)
            page.locator("#remove-0").click()
            expect(first).to_have_value(changed)
            expect(second).to_be_hidden()
            page.locator("#edit-button").click()
            after = page.locator("#after img")
            expect(after).to_be_visible(timeout=180_000)
            natural = after.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert tuple(natural) == size
            expect(page.locator("#status")).to_contain_text("changed plan")
            expect(page.locator("#history img")).to_have_count(1)
            link = page.locator("#download-trace a").first
            trace = json.loads(page.request.get(link.get_attribute("href")).text())
            assert trace["sub_requests"][0] == changed and trace["plan"]["changed"] is True
            assert trace["plan"]["changes"][0]["before"] == proposed.strip()
            image_link = page.locator("#download-image a").first
            downloaded = tmp_path / "edited.png"
            downloaded.write_bytes(page.request.get(image_link.get_attribute("href")).body())
            assert Image.open(downloaded).size == size
            screenshot = tmp_path / "app.png"
            page.screenshot(path=str(screenshot), full_page=True)
            page.locator("#before").screenshot(path=str(tmp_path / "before.png"))
        finally:
            browser.close()
    if os.environ.get("IMAGEEDIT_R1_KEEP_SCREENSHOTS"):  # to look at the page by eye
        shutil.copytree(tmp_path, os.environ["IMAGEEDIT_R1_KEEP_SCREENSHOTS"], dirs_exist_ok=True)
    before = Image.open(tmp_path / "before.png").convert("RGB")
    counts = {name: sum(1 for p in before.getdata() if all(abs(a - b) < 30 for a, b in zip(p, colour, strict=True)))
              for name, colour in (("red", RED), ("blue", BLUE))}
    # The uploaded image is drawn in the Before panel: large red and blue blocks, about equal.
    assert counts["red"] > 3000 and counts["blue"] > 3000 and 0.7 < counts["red"] / counts["blue"] < 1.4
    full = Image.open(screenshot)
    assert full.width == 1400 and full.height >= 900


def _error_badges(page) -> int:
    """Gradio's red "Error" marks on panels (and error toasts) visible in the page."""
    return page.get_by_text("Error", exact=True).count() + page.locator(".toast-body.error").count()


def _in_view(locator) -> bool:
    """Whether the element's first lines are on screen, without scrolling."""
    return locator.evaluate("e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.top + 40 <= innerHeight; }")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_in_the_browser_the_first_clicks_read_clearly(served, tmp_path):
    """Plan is the first action; Edit before Plan is a sentence, not red Error badges; the progress
    under the buttons names each stage and each denoising step; the time shown is the time waited."""
    pytest.importorskip("playwright.sync_api")
    import time

    from playwright.sync_api import expect, sync_playwright

    size = (1600, 1200)  # near the 2 MP limit: saving and showing the images takes real time
    path = tmp_path / "photo.jpg"
    two_tone(size).save(path, quality=90)
    shots = tmp_path / "shots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(served.url)
            plan_button, edit_button, status = (page.locator(f"#{name}") for name in ("plan-button", "edit-button",
                                                                                       "status"))
            expect(plan_button).to_have_class(_primary := __import__("re").compile(r"\bprimary\b"))
            expect(edit_button).not_to_have_class(_primary)
            page.screenshot(path=str(shots / "1-empty.png"))

            edit_button.click()  # before any plan
            expect(status).to_contain_text("press Plan first", timeout=30_000)
            page.wait_for_timeout(500)
            assert _error_badges(page) == 0
            page.screenshot(path=str(shots / "2-edit-before-plan.png"))

            page.locator("#input-image input[type=file]").set_input_files(str(path))
            expect(page.locator("#input-image img")).to_be_visible(timeout=30_000)
            page.locator("#request textarea").fill("Change the color of the car to blue and remove the sign")
            plan_button.click()
            expect(status).to_contain_text("Plan ready", timeout=120_000)
            expect(edit_button).to_have_class(_primary)
            assert _error_badges(page) == 0

            page.locator("#steps input[type=number]").fill("25")
            page.locator("#steps input[type=number]").press("Enter")
            clicked = time.perf_counter()
            edit_button.click()
            expect(status).to_contain_text("denoising step", timeout=60_000)
            page.screenshot(path=str(shots / "3-denoising.png"))
            assert _in_view(status)  # where the person is looking, not below the fold
            expect(status).to_contain_text("Edited in", timeout=180_000)
            expect(page.locator("#after img")).to_be_visible(timeout=30_000)
            waited = time.perf_counter() - clicked
            shown = float(__import__("re").search(r"Edited in ([0-9.]+) s", status.inner_text()).group(1))
            page.screenshot(path=str(shots / "4-edited.png"), full_page=True)
            assert _error_badges(page) == 0
        finally:
            browser.close()
            if os.environ.get("IMAGEEDIT_R1_KEEP_SCREENSHOTS"):  # kept on failure too: to look at the page
                shutil.copytree(shots, os.environ["IMAGEEDIT_R1_KEEP_SCREENSHOTS"], dirs_exist_ok=True)
    # The figure is the wait: at most what the test measured from click to image, and short of it
    # by no more than the page needs to fetch and draw the result.
    assert waited - 1.5 <= shown <= waited + 0.1, (shown, waited)


def test_a_busy_port_is_one_line_naming_the_port_option_before_any_model_is_built():
    import subprocess
    import sys

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "imageedit_r1.app", "--demo", "--port", str(port)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: port {port} on 127.0.0.1 is in use (another program, or the app already running); "
                     "choose another with --port"], result.stderr
    assert "building tiny" not in result.stdout


class SlowEditor:
    """A real Editor that takes a while and records how many edits ran at once."""

    name, model_id = "slow", "test/slow"

    def __init__(self, seconds=1.5):
        import threading

        self.seconds, self.active, self.most, self.calls = seconds, 0, 0, 0
        self._guard = threading.Lock()

    def edit(self, image, instruction, *, seed=None):
        import time

        with self._guard:
            self.active += 1
            self.most = max(self.most, self.active)
            self.calls += 1
        time.sleep(self.seconds)
        with self._guard:
            self.active -= 1
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def test_concurrent_users_wait_in_a_bounded_queue_and_never_share_the_model(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    editor = SlowEditor()
    with scripted_app(tmp_path, editor, queue_size=2) as app:
        url = app.url
        path = tmp_path / "in.png"
        two_tone((64, 40)).save(path)
        plan = Client(url, verbose=False).predict(handle_file(str(path)), "Recolor it", "single-turn", api_name="/plan")

        def execute(seed):
            try:
                result = Client(url, verbose=False).predict(handle_file(str(path)), plan, "flux-kontext", seed, None,
                                                            api_name="/execute")
                return "ok", result
            except Exception as exc:  # noqa: BLE001 - the refusal's message is what is checked
                return "refused", str(exc)

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(execute, range(6)))
    done = [result for status, result in outcomes if status == "ok"]
    refused = [message for status, message in outcomes if status == "refused"]
    assert editor.most == 1  # never two edits on the model at once
    assert 1 <= len(done) <= 3 and len(done) == editor.calls  # one running + at most queue_size waiting
    assert refused and all("queue is full" in message.lower() for message in refused), refused
    assert all(Image.open(image).size == (64, 40) for image, _ in done)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_in_the_browser_a_sample_image_fills_the_input_and_the_request(tmp_path):
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect, sync_playwright

    from imageedit_r1.app.ui import SAMPLE_SIZE
    from imageedit_r1.sample_images import SAMPLE_REQUESTS
    from tests.test_pipeline import SUBS, InvertingEditor

    with scripted_app(tmp_path, InvertingEditor()) as app, sync_playwright() as playwright:
        url = app.url
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(url)
            page.locator("#sample input").click()
            page.get_by_role("option", name="portrait").click()
            expect(page.locator("#request textarea")).to_have_value(SAMPLE_REQUESTS["portrait"], timeout=20_000)
            page.locator("#plan-button").click()
            expect(page.locator("#sub-request-1 textarea")).to_have_value(SUBS[1], timeout=30_000)
            page.locator("#edit-button").click()
            after = page.locator("#after img")
            expect(after).to_be_visible(timeout=30_000)
            assert tuple(after.evaluate("img => [img.naturalWidth, img.naturalHeight]")) == SAMPLE_SIZE
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_in_the_browser_a_failed_edit_is_its_sentence_and_no_error_badge(tmp_path):
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect, sync_playwright

    from imageedit_r1.agents.editors import EditRefusedError
    from tests.test_pipeline import InvertingEditor

    editor = InvertingEditor(fail=EditRefusedError("blocked by the <b>safety</b> filter"))
    with scripted_app(tmp_path, editor) as app, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(app.url)
            page.locator("#sample input").click()
            page.get_by_role("option", name="portrait").click()
            expect(page.locator("#input-image img")).to_be_visible(timeout=20_000)
            page.locator("#plan-button").click()
            expect(page.locator("#status")).to_contain_text("Plan ready", timeout=30_000)
            page.locator("#edit-button").click()
            status = page.locator("#status")
            expect(status).to_contain_text("Could not edit: editing failed: blocked by the <b>safety</b> filter",
                                           timeout=30_000)
            page.wait_for_timeout(500)
            assert _error_badges(page) == 0 and _in_view(status)
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_in_the_browser_the_login_page_works_behind_the_front_door(tmp_path):
    """The front door refuses every route to a client without a login but the login page and
    what it loads: the page must still draw its form, refuse a wrong password and let the right
    one in."""
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect, sync_playwright

    from tests.test_pipeline import InvertingEditor

    password = "correct-horse-battery-staple"
    with scripted_app(tmp_path, InvertingEditor(), auth=[("alice", password)]) as app, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(app.url)
            username = page.get_by_label("username")
            expect(username).to_be_visible(timeout=20_000)
            username.fill("alice")
            page.get_by_label("password").fill("not-the-password")
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_text("Incorrect Credentials", exact=False)).to_be_visible(timeout=10_000)
            page.screenshot(path=str(tmp_path / "login.png"))
            username.fill("alice")  # Gradio's form empties it after a refusal
            page.get_by_label("password").fill(password)
            page.get_by_role("button", name="Login").click()
            expect(page.locator("#plan-button")).to_be_visible(timeout=20_000)
        finally:
            browser.close()
            if os.environ.get("IMAGEEDIT_R1_KEEP_SCREENSHOTS"):
                shutil.copy(tmp_path / "login.png", os.environ["IMAGEEDIT_R1_KEEP_SCREENSHOTS"])


def test_with_a_login_only_signed_in_clients_reach_the_endpoints(tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    from imageedit_r1.app.__main__ import read_auth
    from tests.test_pipeline import InvertingEditor

    monkeypatch.setenv("IMAGEEDIT_R1_APP_AUTH", "alice:correct-horse-battery")
    auth = read_auth(None)
    with scripted_app(tmp_path, InvertingEditor(), auth=auth) as app:
        url = app.url
        assert httpx.get(f"{url}config", timeout=10).status_code in (401, 403)
        with pytest.raises(Exception):  # noqa: B017, PT011 - gradio_client refuses to connect without the login
            Client(url, verbose=False)
        path = tmp_path / "in.png"
        two_tone((32, 24)).save(path)
        client = Client(url, auth=auth[0], verbose=False)
        plan = client.predict(handle_file(str(path)), "Recolor it", "multi-turn", api_name="/plan")
        _, trace = client.predict(handle_file(str(path)), plan, "flux-kontext", 1, None, api_name="/execute")
    assert trace["status"] == "ok" and "correct-horse-battery" not in json.dumps(trace)
