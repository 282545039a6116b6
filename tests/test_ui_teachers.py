"""The dashboard's teacher ensembles and uploaded teachers, in a real headless browser.

The same stack and browser as tests/test_ui.py (its fixtures and helpers). The ensemble is a model record
written to the store with a report as an ensemble job writes it (``teacher.members``), so nothing trains;
the uploaded teacher is tests/test_foreign_teacher.py's Hugging Face folder with its labels in another order.
Skipped, saying why, where playwright or chromium is missing (as test_ui is).
"""

from __future__ import annotations

import pickle
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import fixed_student, remove_model, untrained_model
from test_foreign_teacher import OTHER_ORDER, other_order, tar_gz, zipped  # noqa: F401 (other_order: fixture)
from test_models_api import LABELS, TEXT
from test_ui import _open, artifacts, browser, page, shoot  # noqa: F401 (fixtures)

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # test_ui has skipped the module already; this keeps linters calm
    pytest.skip("the playwright package is not installed", allow_module_level=True)

UPLOADED = "teachers/tch_elsewhere"  # the third member: a folder, as an uploaded teacher's path


def scores(dev: float, test: float, **size: int) -> dict[str, Any]:
    """A report entry (tagdistill.report.model_entry's shape) with these overall F1s, LOC its one type."""
    def split(f1: float) -> dict[str, Any]:
        return {"f1": f1, "precision": f1, "recall": f1, "per_type": {"LOC": {"f1": f1, "support": 12}}}
    return {"dev": split(dev), "test": split(test), **size}


@pytest.fixture(scope="module")
def ensemble(api: str, store, settings) -> Iterator[Any]:
    """A model taught by an ensemble of three: two fine-tuned (seed 13, the job's, and 7) and a folder."""
    from tagdistill.config import JobConfig

    members = [scores(0.712, 0.705), scores(0.734, 0.721), scores(0.689, 0.676)]
    teacher = {**scores(0.81, 0.79, parameters=3_000_000, bytes_on_disk=12_000_000),
               "members": [{"member": i, **m, "parameters": 1_000_000, "bytes_on_disk": 4_000_000}
                           for i, m in enumerate(members)]}
    config = JobConfig(dataset_id="ds_models", teacher={"ensemble": [{}, {"seed": 7}, {"path": UPLOADED}]})
    job_dir = Path(settings.data_dir) / "jobs" / f"job_{secrets.token_hex(6)}"
    model = untrained_model(
        store, job_dir, fixed_student(TEXT.split(), LABELS, "O"), "ds_models", name="Taught by three",
        teacher=teacher, config=config,
    )
    yield model
    remove_model(store, model)


def test_a_model_taught_by_an_ensemble_shows_each_members_f1_beside_the_ensembles(
    page: Page, ensemble: Any, artifacts: Path
) -> None:
    page.goto(f"/#/models?model={ensemble.id}")
    card = page.locator(f"article[data-id='{ensemble.id}']")
    expect(card).to_contain_text("teacher ensemble of 3")
    expect(card.locator(".figure-note")).to_have_text("ensemble of 3")  # under the teacher's F1 figure
    table = card.locator(".members-table")
    expect(table.locator("caption")).to_contain_text("Teacher: ensemble of 3")
    expect(table.locator("thead th")).to_have_text(
        ["Member", "What it is", "F1 dev (%)", "F1 test (%)", "Parameters", "Size on disk"])
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(4)
    # each member: its index, what it is (its folder, or its model and seed: the job's + its index unless
    # given), dev and test F1; then the ensemble's own
    expected = [("#0", "minilm, seed 13", "71.2", "70.5", "1,000,000", "4.0 MB"),
                ("#1", "minilm, seed 7", "73.4", "72.1", "1,000,000", "4.0 MB"),
                ("#2", UPLOADED, "68.9", "67.6", "1,000,000", "4.0 MB"),
                ("Ensemble", "all of them", "81.0", "79.0", "3,000,000", "12.0 MB")]
    for i, cells in enumerate(expected):
        expect(rows.nth(i).locator("th, td")).to_have_text(list(cells))
    expect(card).to_contain_text("Folder of the ensemble's first member")
    shoot(page, artifacts, "models-ensemble")
    page.emulate_media(color_scheme="dark")
    shoot(page, artifacts, "models-ensemble-dark")


def test_an_uploaded_teacher_is_listed_chosen_in_the_job_form_and_deleted_on_the_teachers_page(
    page: Page, api: str, other_order: Path, tmp_path: Path, artifacts: Path
) -> None:
    page.on("dialog", lambda dialog: dialog.accept())  # "Delete teacher ...?"
    page.goto("/#/teachers")
    expect(page.get_by_role("heading", name="Teachers", level=1)).to_be_visible()
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Teachers")

    # an archive with a pickle in it: refused under the archive field, naming the file
    unsafe = tmp_path / "unsafe.tar.gz"
    unsafe.write_bytes(tar_gz(other_order, {"model/training_args.bin": pickle.dumps({"lr": 1e-4})}))
    page.set_input_files("#t-archive", str(unsafe))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.locator("#t-archive-error")).to_contain_text("model/training_args.bin")
    expect(page.locator("#t-archive")).to_have_attribute("aria-invalid", "true")

    # a good one: listed with its name, its labels and its size
    good = tmp_path / "my-ner.zip"
    good.write_bytes(zipped(other_order))
    name = f"ner from elsewhere {secrets.token_hex(3)}"
    page.set_input_files("#t-archive", str(good))
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Upload and check").click()
    expect(page.locator(".upload-result")).to_contain_text(f"Uploaded {name}: 9 labels.")
    expect(page.locator("#t-archive-error")).to_be_hidden()
    row = page.locator(".teachers-table tbody tr", has_text=name)
    expect(row.locator(".chip-label")).to_have_text(OTHER_ORDER)
    teacher_id = row.get_attribute("data-id")
    with httpx.Client(base_url=api, timeout=60) as client:
        uploaded = client.get(f"/teachers/{teacher_id}").json()
        expect(row.locator("td.num")).to_have_text(re.compile(r"\d+(\.\d)? [KM]B"))
        expect(row).to_contain_text("bert")
        shoot(page, artifacts, "teachers")

        # "Distil it": the job form, the teacher chosen as teacher.path in a select of the uploaded ones
        row.get_by_role("link", name="Distil it").click()
        page.wait_for_url(re.compile(r"#/jobs\?teacher="))
        chosen = page.get_by_label("Reuse a teacher")
        expect(chosen).to_have_value(uploaded["path"])
        expect(chosen.locator("optgroup[label='Uploaded teachers'] option", has_text=name)).to_have_count(1)
        expect(page.locator(".job-form pre.preview")).to_contain_text(f'"path": "{uploaded["path"]}"')

        # deleted from the list: gone from the page and from the API
        page.goto("/#/teachers")
        page.get_by_role("button", name=f"Delete teacher {name}").click()
        expect(page.locator(".teachers-table tbody tr", has_text=name)).to_have_count(0)
        assert client.get(f"/teachers/{teacher_id}").status_code == 404


def test_the_teachers_page_and_an_ensembles_table_do_not_scroll_sideways_on_a_phone(
    browser: Browser, api: str, ensemble: Any
) -> None:
    page, problems = _open(browser, api, width=390, height=844)
    for route in ("/#/teachers", f"/#/models?model={ensemble.id}"):
        page.goto(route)
        expect(page.locator("main h1")).to_be_visible()
        page.wait_for_timeout(600)  # the data arrives
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{route} scrolls sideways by {overflow} px on a phone"
    page.context.close()
    assert not problems, problems
