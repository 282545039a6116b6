"""The web dashboard in a real headless browser (Debian's chromium, driven by playwright).

The whole stack is real (see conftest): the pages upload the sample dataset, start a job with
the tiny BERT teacher, follow it live, show its results and tag a sentence. Each page leaves a
screenshot in the artifacts folder (TAGDISTILL_UI_ARTIFACTS, else pytest's temporary folder).
Skipped, saying why, where playwright or chromium is missing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import SAMPLE

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:
    pytest.skip("the playwright package is not installed (pip install -e '.[dev]')", allow_module_level=True)

CHROMIUM = Path(os.environ.get("TAGDISTILL_TEST_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
KNOWN = "Researchers at Osaka University said they had found a new species of frog in the Andes ."
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)  # the first prediction loads the model


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("TAGDISTILL_UI_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


def _open(browser: Browser, api: str, width: int = 1280, height: int = 900) -> tuple[Page, list[str]]:
    """A fresh page at the dashboard; the list collects the page's script errors and failed requests."""
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=api)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    # Nothing may come from anywhere but the service itself (the page must work offline).
    page.route(re.compile(r"^(?!" + re.escape(api) + r")https?://"), lambda route: (
        problems.append(f"external request: {route.request.url}"), route.abort()))
    return page, problems


@pytest.fixture
def page(browser: Browser, api: str) -> Iterator[Page]:
    page, problems = _open(browser, api)
    yield page
    page.context.close()
    unexpected = [p for p in problems if "422" not in p]  # a rejected form logs its 422 response
    assert not unexpected, unexpected


def shoot(page: Page, artifacts: Path, name: str) -> None:
    page.wait_for_timeout(300)  # let the bars and charts settle
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def _sample_files(page: Page) -> None:
    for split, name in (("train", "train.conll"), ("dev", "dev.conll"), ("test", "test.conll"),
                        ("unlabeled", "unlabeled.txt")):
        page.set_input_files(f"#f-{split}", str(SAMPLE / name))


@pytest.fixture(scope="module")
def uploaded(browser: Browser, api: str, artifacts: Path) -> dict[str, Any]:
    """The sample dataset uploaded through the Datasets page (after a rejected bad file)."""
    page, problems = _open(browser, api)
    page.goto("/#/datasets")
    expect(page.get_by_role("heading", name="Datasets", level=1)).to_be_visible()

    # a dev file with a bad tag: the error appears under the dev field, with its line
    _sample_files(page)
    page.set_input_files("#f-dev", files=[{"name": "my-dev.conll", "mimeType": "text/plain",
                                           "buffer": b"Paris B-LOC\nis O\n\nBerlin X-LOC\n"}])
    page.get_by_label("Name").fill("sample via the UI")
    page.get_by_role("button", name="Upload and check").click()
    dev_error = page.locator("#e-dev")
    expect(dev_error).to_be_visible()
    expect(dev_error).to_contain_text("Line 4 of my-dev.conll")
    expect(page.locator("#e-train")).to_be_hidden()
    expect(page.locator("#f-dev")).to_have_attribute("aria-invalid", "true")
    shoot(page, artifacts, "datasets-error")

    # the right file: statistics per split
    page.set_input_files("#f-dev", str(SAMPLE / "dev.conll"))
    page.get_by_role("button", name="Upload and check").click()
    result = page.locator(".upload-result")
    expect(result).to_contain_text("Uploaded sample via the UI")
    expect(page.locator("#e-dev")).to_be_hidden()
    train_row = result.locator("tr[data-split=train]")
    expect(train_row.locator("td").first).to_have_text("400")
    expect(result.locator("tr[data-split=unlabeled]")).to_be_visible()
    dataset_id = re.search(r"\((ds_[^)]+)\)", result.locator("p.ok").inner_text()).group(1)
    # the form is reset to its defaults, so the next upload of a text file is read as text (it once was CoNLL)
    expect(page.get_by_label("Format of the unlabeled file")).to_have_value("text")
    expect(page.get_by_label("Format of train, dev and test")).to_have_value("conll")
    _sample_files(page)
    page.get_by_role("button", name="Upload and check").click()
    expect(result).to_contain_text(re.compile(r"Uploaded ds_\w+ \(ds_"), timeout=30_000)  # no name this time
    expect(result.locator("tr[data-split=unlabeled]")).to_be_visible()
    page.context.close()
    assert not [p for p in problems if "422" not in p], problems
    return {"id": dataset_id}


@pytest.fixture(scope="module")
def finished(browser: Browser, api: str, uploaded: dict[str, Any], tiny_teacher: Path,
             artifacts: Path) -> dict[str, Any]:
    """A job started with the Jobs form and followed on its page until it succeeded, with its "model"."""
    page, problems = _open(browser, api)
    page.goto(f"/#/jobs?dataset={uploaded['id']}")
    expect(page.get_by_label("Dataset")).to_have_value(uploaded["id"])
    page.get_by_label("Teacher epochs").fill("1")
    page.get_by_label("Student epochs").fill("6")
    page.get_by_label("Student hidden size").fill("100")
    page.get_by_label("Distillation").select_option("kd")
    page.get_by_label("Device").select_option("cpu")

    # a bad setting in the JSON box is shown by the box, naming the field
    box = page.get_by_label("Full config (JSON)")
    box.fill('{"distill": {"temperature": 0}}')
    page.get_by_role("button", name="Start job").click()
    config_error = page.locator('[data-error-for="config"]')
    expect(config_error).to_contain_text("distill.temperature")
    box.fill("{not json")
    page.get_by_role("button", name="Start job").click()
    expect(config_error).to_contain_text("not valid JSON")

    extra = {"teacher": {"base_model": str(tiny_teacher), "learning_rate": 3e-3},
             "distill": {"learning_rate": 5e-3, "distill_weight": 0.1, "min_steps": 0, "epochs": 10}}
    box.fill(json.dumps(extra))
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url(re.compile(r"#/jobs/job_"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()

    # record every figure the live progress bar and ETA show while the job runs
    page.evaluate("""() => {
        window.__seen = {progress: [], eta: [], timer: []};
        const note = () => {
            const bar = document.querySelector('.progress-block [role=progressbar]');
            const eta = document.getElementById('eta');
            const timer = document.querySelector('.timeline [data-state=active] .stage-time');
            if (bar) window.__seen.progress.push(Number(bar.getAttribute('aria-valuenow')));
            if (eta) window.__seen.eta.push(eta.textContent);
            if (timer) window.__seen.timer.push(timer.textContent);
        };
        new MutationObserver(note).observe(document.querySelector('main'), {subtree: true, childList: true});
        note();
    }""")
    expect(page.locator(".timeline [data-state=active]")).to_be_visible(timeout=60_000)
    shoot(page, artifacts, "job-running")
    expect(page.locator("#main .badge")).to_have_text("succeeded", timeout=240_000)
    seen = page.evaluate("window.__seen")
    between = [v for v in seen["progress"] if 0 < v < 100]
    assert between, f"the progress bar never showed a figure between 0 and 100: {seen['progress']}"
    assert len(set(seen["progress"])) >= 3, seen["progress"]
    assert seen["progress"][-1] == 100
    assert any(re.search(r"about .* left", eta) for eta in seen["eta"]), seen["eta"]
    # the active stage's timer counts on by itself, between events
    assert len({t for t in seen["timer"] if t.startswith("running")}) >= 3, seen["timer"]
    page.context.close()
    assert not [p for p in problems if "422" not in p], problems
    with httpx.Client(base_url=api, timeout=30) as client:
        job = client.get(f"/jobs/{job_id}").json()
        return {**job, "model": client.get(f"/models/{job['model_id']}").json()}


def test_dataset_page_shows_the_upload_and_its_statistics(
    page: Page, uploaded: dict[str, Any], artifacts: Path
) -> None:
    page.goto("/#/datasets")
    card = page.locator(f"article[data-id='{uploaded['id']}']")
    expect(card).to_contain_text("sample via the UI")
    for split in ("train", "dev", "test", "unlabeled"):
        expect(card.locator(f"tr[data-split={split}]")).to_be_visible()
    expect(card.locator("thead")).to_contain_text("PER")
    shoot(page, artifacts, "datasets")


def test_job_page_shows_the_finished_job(page: Page, finished: dict[str, Any], artifacts: Path) -> None:
    assert finished["status"] == "succeeded", finished
    page.goto(f"/#/jobs/{finished['id']}")
    expect(page.locator("#main .badge")).to_have_text("succeeded")
    for stage in ("teacher", "labeling", "baseline", "student", "evaluating"):
        expect(page.locator(f".timeline [data-stage={stage}]")).to_have_attribute("data-state", "done")
    expect(page.get_by_role("progressbar", name="job progress")).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
    # the curves came from the event stream: one teacher epoch, several student epochs
    page.wait_for_function("""() => {
        const c = document.querySelectorAll('.chart-box canvas');
        const f1 = window.Chart && window.Chart.getChart(c[1]);
        return f1 && f1.data.datasets[0].data.length >= 1 && f1.data.datasets[1].data.length >= 2;
    }""")
    # the results: per-type F1 teacher vs student, and size and speed side by side
    f1 = page.locator("table.f1-table")
    for entity_type in ("LOC", "ORG", "PER"):
        expect(f1.get_by_role("rowheader", name=entity_type)).to_be_visible()
    student_f1 = float(f1.locator("tr.total td").nth(1).inner_text())
    report = finished["model"]
    assert student_f1 == pytest.approx(100 * report["student"]["test"]["f1"], abs=0.06)
    size = page.locator("table.size-table")
    expect(size).to_contain_text("Words/s, batch 1")
    batch_1 = size.locator("tbody tr").nth(2)
    expect(batch_1.locator("td").last).to_contain_text(re.compile(r"× (faster|slower)"))
    expect(page.locator(".results").get_by_role("link", name="Try it", exact=True)).to_be_visible()
    # what distillation bought: the gain over the baseline student, in points, and which one is served
    gain = 100 * report["distillation_gain"]["test"]["f1"]
    panel = page.get_by_label("distillation gain")
    expect(panel).to_contain_text(f"Distillation gain: {'+' if gain > 0 else ''}{gain:.1f} F1 points on test")
    expect(panel).to_contain_text(f"Served: the {report['served']['student']} student")
    together = report["teaching"]["by"] == "teacher_and_baseline"
    taught = "the teacher and the baseline together" if together else "the teacher alone"
    expect(panel).to_contain_text(f"Taught by {taught}: {report['teaching']['reason']}.")
    shoot(page, artifacts, "job")


def test_jobs_list_shows_status_and_progress(page: Page, finished: dict[str, Any], artifacts: Path) -> None:
    page.goto("/#/jobs")
    row = page.locator(f"tr[data-id='{finished['id']}']")
    expect(row).to_contain_text("succeeded")
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    page.get_by_role("heading", name="Start a job").click()
    expect(page.get_by_label("Teacher base model")).to_be_visible()
    shoot(page, artifacts, "jobs")
    row.get_by_role("link", name=finished["id"]).click()
    expect(page.get_by_role("heading", name=f"Job {finished['id']}")).to_be_visible()


def test_job_page_shows_where_student_and_teacher_disagree_by_type(
    page: Page, api: str, finished: dict[str, Any], artifacts: Path
) -> None:
    analysis = page.request.get(f"{api}/models/{finished['model_id']}/analysis").json()
    page.goto(f"/#/jobs/{finished['id']}")
    section = page.locator("section.analysis")
    expect(section.get_by_role("heading", name="Where the student and the teacher disagree")).to_be_visible()
    expect(section.get_by_role("status")).to_contain_text(f"{analysis['total_disagreements']} of ")
    expect(section.locator("table.confusion").first).to_contain_text("missed")
    if not analysis["disagreements"]:
        return  # nothing to show beyond the count
    first = analysis["disagreements"][0]
    row = section.locator(f"li.disagreement[data-index='{first['index']}']")
    expect(row.locator(".who-teacher mark.ent")).to_have_count(len(first["teacher"]))
    expect(row.locator(".who-student mark.ent")).to_have_count(len(first["student"]))
    kind = first["types"][0]
    section.get_by_label("Entity type").select_option(kind)
    expect(section.get_by_role("status")).to_contain_text(f"with a {kind} entity")
    for types in section.locator("li.disagreement").evaluate_all("rows => rows.map(r => r.textContent)"):
        assert kind in types
    shoot(page, artifacts, "job-analysis")


def test_models_page_shows_metrics_and_download(page: Page, api: str, finished: dict[str, Any],
                                                artifacts: Path) -> None:
    model_id = finished["model_id"]
    page.goto(f"/#/models?model={model_id}")
    card = page.locator(f"article[data-id='{model_id}']")
    expect(card.locator("table.f1-table")).to_be_visible()
    expect(card.locator("table.size-table")).to_contain_text("Size on disk")
    expect(card.get_by_label("distillation gain")).to_contain_text("for the same student trained alone")
    link = card.get_by_role("link", name=re.compile("Download the student"))
    expect(link).to_have_attribute("href", f"/models/{model_id}/download")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"{model_id}.tar.gz"
    shoot(page, artifacts, "models")


def test_try_it_highlights_entities_from_student_and_teacher(
    page: Page, finished: dict[str, Any], artifacts: Path
) -> None:
    page.goto(f"/#/try?model={finished['model_id']}")
    expect(page.get_by_label("Model")).to_have_value(finished["model_id"])
    page.get_by_label("Text").fill(KNOWN)
    page.get_by_role("button", name="Tag", exact=True).click()
    student = page.locator(".panel-student")
    expect(student.locator("mark.ent[data-label=ORG]")).to_contain_text("Osaka University")
    expect(student.locator("mark.ent[data-label=LOC]")).to_contain_text("Andes")
    expect(student.locator(".panel-time")).to_contain_text(re.compile(r"[\d.]+ ms tagging on the server"))
    teacher = page.locator(".panel-teacher")
    expect(teacher.locator(".panel-time")).to_contain_text("ms tagging on the server")
    expect(teacher.locator(".tagged")).to_contain_text("Osaka")
    expect(page.locator(".legend")).to_contain_text("ORG")
    shoot(page, artifacts, "try")


def test_api_key_is_kept_for_the_session_and_sent_as_bearer(page: Page) -> None:
    page.goto("/#/models")
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    # keyboard only: the key button, type the key, Enter saves it
    page.get_by_role("button", name=re.compile("API key")).focus()
    page.keyboard.press("Enter")
    page.keyboard.type("secret-key-123")
    with page.expect_request(lambda r: r.url.endswith("/models?limit=100")) as request:
        page.keyboard.press("Enter")
    assert request.value.headers.get("authorization") == "Bearer secret-key-123"
    page.reload()
    with page.expect_request(lambda r: "/jobs" in r.url) as request:
        page.get_by_role("link", name="Jobs", exact=True).click()
    assert request.value.headers.get("authorization") == "Bearer secret-key-123"
    assert page.evaluate("sessionStorage.getItem('tagdistill.apiKey')") == "secret-key-123"
    with page.expect_request(lambda r: "/events" in r.url) as request:
        page.goto("/#/jobs")
        page.locator(".jobs-table tbody a").first.click()
    assert request.value.headers.get("authorization") == "Bearer secret-key-123"


def test_phone_layout_has_no_sideways_scrolling(browser: Browser, api: str, finished: dict[str, Any],
                                                artifacts: Path) -> None:
    page, problems = _open(browser, api, width=390, height=844)
    for route in (f"/#/jobs/{finished['id']}", "/#/datasets", "/#/jobs", "/#/models", "/#/try"):
        page.goto(route)
        expect(page.locator("main h1")).to_be_visible()
        page.wait_for_timeout(600)  # the data arrives
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{route} scrolls sideways by {overflow} px on a phone"
        if "/jobs/" in route:
            shoot(page, artifacts, "job-phone")
    page.context.close()
    assert not problems, problems


def test_api_docs_render_their_operations_offline(page: Page) -> None:
    """/docs and /redoc with no request leaving the machine (the ``page`` fixture fails on any)."""
    page.goto("/docs")
    expect(page.locator(".opblock-summary-path", has_text="/jobs/{job_id}/events").first).to_be_visible()
    assert page.locator(".opblock").count() >= 10
    page.goto("/redoc")
    expect(page.get_by_role("heading", name=re.compile(r"^tagdistill")).first).to_be_visible()
    expect(page.get_by_text("/predict").first).to_be_attached()
