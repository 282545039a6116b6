"""The dashboard's aliases, names and tags, clone and edit, and Try it, in a real headless browser.

The same stack and browser as tests/test_ui.py (its fixtures and helpers); the models are untrained
with known answers (tests/builders.py ``fixed_student``, ``fixed_teacher``), so nothing trains here.
Skipped, saying why, where playwright or chromium is missing (as test_ui is).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import remove_model
from test_models_api import TEXT, drop_aliases_of, make_model
from test_service import slow_job, wait_status
from test_ui import _open, artifacts, browser, page, shoot  # noqa: F401 (fixtures)

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # test_ui has skipped the module already; this keeps linters calm
    pytest.skip("the playwright package is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def models(api: str, store, settings, tiny_teacher: Path) -> Iterator[dict[str, Any]]:
    """"loc": its student tags every word LOC, its teacher none; "none": its student tags none."""
    made = {
        "loc": make_model(store, settings, "B-LOC", teacher=tiny_teacher, name="Places", tags=["ui-alias"]),
        "none": make_model(store, settings, "O", name="Nothing", tags=["ui-alias"]),
    }
    yield made
    drop_aliases_of(store, {m.id for m in made.values()})
    for m in made.values():
        remove_model(store, m)


def tag_in_try_it(page: Page) -> dict[str, Any]:
    """Tag TEXT on the Try it page; the student request's body and response."""
    page.get_by_label("Text").fill(TEXT)
    with page.expect_response(lambda r: r.url.endswith("/predict")) as answer:
        page.get_by_role("button", name="Tag", exact=True).click()
    return {"sent": answer.value.request.post_data_json, "got": answer.value.json()}


def test_try_it_uses_the_production_alias_and_marks_where_student_and_teacher_disagree(
    page: Page, api: str, models: dict[str, Any], artifacts: Path
) -> None:
    loc = models["loc"]
    page.goto("/#/try")
    expect(page.locator("#try-model-hint")).to_contain_text("No production alias yet")
    assert httpx.put(f"{api}/aliases/production", json={"model_id": loc.id}).status_code == 200
    page.reload()
    expect(page.get_by_label("Model")).to_have_value("production")
    expect(page.locator("#try-curl")).to_contain_text('"model":"production"')
    request = tag_in_try_it(page)
    assert request["sent"]["model"] == "production" and "model_id" not in request["sent"]
    assert (request["got"]["model_id"], request["got"]["alias"]) == (loc.id, "production")

    # every student entity is one the teacher lacks: each is outlined, and the count says so
    student, teacher = page.locator(".panel-student"), page.locator(".panel-teacher")
    # the first teacher request loads transformers in the API process: slow on a busy machine
    expect(teacher.locator(".panel-time")).to_contain_text("ms tagging on the server", timeout=90_000)
    marks = student.locator("mark.ent[data-label=LOC]")
    expect(marks).to_have_count(len(TEXT.split()))
    expect(student.locator("mark.ent[data-differs]")).to_have_count(len(TEXT.split()))
    expect(student.locator(".panel-model")).to_contain_text(f"{loc.id} (alias production)")
    expect(teacher.locator("mark.ent")).to_have_count(0)
    verdict = page.locator(".disagree-summary")
    expect(verdict).to_contain_text("3 spans where the student and the teacher disagree")
    # each entity's score, when the API gives one
    scored = all(isinstance(e.get("score"), float) for e in request["got"]["results"][0]["entities"])
    expect(student.locator(".ent-score")).to_have_count(len(TEXT.split()) if scored else 0)
    shoot(page, artifacts, "try-alias")

    # the request as curl: the alias, the text, and with a key in use a placeholder (never the key)
    page.evaluate("sessionStorage.setItem('tagdistill.apiKey', 'not-for-the-page')")
    page.reload()
    page.get_by_text("The request as curl").click()
    curl = page.locator("#try-curl")
    expect(curl).to_contain_text(f"curl -X POST '{api}/predict'")
    expect(curl).to_contain_text("-H 'Authorization: Bearer <your API key>'")
    assert "not-for-the-page" not in curl.inner_text()
    assert json.loads(re.search(r"-d '(.*)'$", curl.inner_text()).group(1))["model"] == "production"


def test_moving_the_alias_on_the_models_page_moves_what_try_it_tags_with(
    page: Page, models: dict[str, Any], artifacts: Path
) -> None:
    loc, none = models["loc"], models["none"]
    page.goto(f"/#/models?model={none.id}")
    card = page.locator(f"article[data-id='{none.id}']")
    expect(card).to_contain_text("Nothing")
    expect(card.locator(".chip-tag")).to_have_text(["ui-alias"])
    expect(card.get_by_role("link", name=re.compile("Download the teacher"))).to_have_attribute(
        "href", f"/models/{none.id}/download?which=teacher")
    card.get_by_label("Alias", exact=True).fill("production")
    card.get_by_role("button", name="Point it at this model").click()
    expect(card.locator(".chip-alias")).to_contain_text("production")
    expect(page.locator(f"article[data-id='{loc.id}'] .chip-alias")).to_have_count(0)  # moved, not copied
    shoot(page, artifacts, "models-alias")

    page.goto("/#/try")
    expect(page.get_by_label("Model")).to_have_value("production")
    page.get_by_label("Also tag with the teacher (slower)").uncheck()
    request = tag_in_try_it(page)
    assert (request["got"]["model_id"], request["got"]["alias"]) == (none.id, "production")
    expect(page.locator(".panel-student .panel-model")).to_contain_text(f"{none.id} (alias production)")
    expect(page.locator(".panel-student mark.ent")).to_have_count(0)

    # a bad alias name is refused, saying why, on the card
    page.goto(f"/#/models?model={loc.id}")
    card = page.locator(f"article[data-id='{loc.id}']")
    card.get_by_label("Alias", exact=True).fill("mdl_nope")
    card.get_by_role("button", name="Point it at this model").click()
    expect(card.get_by_role("alert")).to_contain_text("is not a valid alias name")


def test_clone_and_edit_opens_the_form_with_the_jobs_dataset_config_name_and_tags(
    page: Page, api: str, dataset: dict[str, Any], tiny_teacher: Path, artifacts: Path
) -> None:
    tag = f"clone-{secrets.token_hex(3)}"
    body = slow_job(dataset["id"], tiny_teacher)
    body["distill"] = {**body.get("distill", {}), "temperature": 3.0, "mode": "kd"}
    body["student"] = {**body.get("student", {}), "hidden": 64}
    with httpx.Client(base_url=api, timeout=60) as client:
        job = client.post("/jobs", json={**body, "name": "Original run", "tags": [tag, "ner"]}).json()
        client.post(f"/jobs/{job['id']}/cancel")
        wait_status(client, job["id"], {"cancelled"}, 60)

        page.goto(f"/#/jobs/{job['id']}")
        expect(page.locator(".record-labels")).to_contain_text("Original run")
        page.get_by_role("link", name="Clone and edit").click()
        page.wait_for_url(re.compile(r"#/jobs\?clone="))
        expect(page.locator(".clone-note")).to_contain_text(job["id"])
        expect(page.get_by_label("Dataset")).to_have_value(dataset["id"])
        expect(page.get_by_label("Teacher base model")).to_have_value(str(tiny_teacher))
        expect(page.get_by_label("Student hidden size")).to_have_value("64")
        expect(page.get_by_label("Distillation")).to_have_value("kd")
        expect(page.get_by_label("Name", exact=True)).to_have_value("Original run (copy)")
        expect(page.get_by_label("Tags", exact=True)).to_have_value(f"{tag}, ner")
        rest = json.loads(page.get_by_label("Full config (JSON)").input_value())
        assert rest["distill"]["temperature"] == 3.0 and "mode" not in rest["distill"]  # the field holds it
        shoot(page, artifacts, "jobs-clone")

        # change one field and start it: the new job is the old one but for that field
        page.get_by_label("Student hidden size").fill("32")
        page.get_by_role("button", name="Start job").click()
        page.wait_for_url(re.compile(r"#/jobs/job_"))
        copy = client.get(f"/jobs/{page.url.rsplit('/', 1)[1]}").json()
        client.post(f"/jobs/{copy['id']}/cancel")
        assert copy["id"] != job["id"]
        assert copy["config"]["student"] == {**job["config"]["student"], "hidden": 32}
        assert {k: v for k, v in copy["config"].items() if k != "student"} == \
            {k: v for k, v in job["config"].items() if k != "student"}
        assert (copy["name"], copy["tags"]) == ("Original run (copy)", [tag, "ner"])
        wait_status(client, copy["id"], {"cancelled"}, 60)

    # the jobs list: names and tags shown, and the tag filter keeps the two
    page.goto("/#/jobs")
    page.get_by_label("Filter by tag").select_option(tag)
    expect(page.locator(".jobs-table tbody tr")).to_have_count(2)
    expect(page.locator(".jobs-table tbody")).to_contain_text("Original run (copy)")
    page.get_by_label("Name contains").fill("(COPY)")
    expect(page.locator(".jobs-table tbody tr")).to_have_count(1)


def test_names_tags_aliases_and_the_curl_line_do_not_scroll_sideways_on_a_phone(
    browser: Browser, api: str, models: dict[str, Any]
) -> None:
    page, problems = _open(browser, api, width=390, height=844)
    for route in ("/#/jobs", f"/#/models?model={models['loc'].id}", "/#/try"):
        page.goto(route)
        expect(page.locator("main h1")).to_be_visible()
        page.wait_for_timeout(600)  # the data arrives
        if route == "/#/try":
            page.get_by_text("The request as curl").click()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{route} scrolls sideways by {overflow} px on a phone"
    page.context.close()
    assert not problems, problems
