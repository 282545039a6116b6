"""The dashboard's colours follow the system setting, keep their contrast, and it shows the API's errors
by the field they name. In a real headless browser (Debian's chromium through playwright, as
tests/test_ui.py), against the session's real stack (see conftest).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

# through test_ui, which skips (saying why) where playwright or chromium is missing
from test_ui import Browser, _open, artifacts, browser, expect, shoot  # noqa: F401 (artifacts, browser: fixtures)


def _luminance(css: str) -> float:
    """WCAG relative luminance of a computed colour such as "rgb(15, 20, 25)"."""
    channels = [int(c) / 255 for c in re.findall(r"\d+", css)[:3]]
    r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_page_follows_the_system_colour_scheme_with_3_to_1_focus_ring_and_input_borders(
    browser: Browser, api: str, artifacts: Path, scheme: str
) -> None:
    page, problems = _open(browser, api)
    page.emulate_media(color_scheme=scheme)
    page.goto("/#/datasets")
    name = page.get_by_label("Name")
    expect(name).to_be_visible()
    name.focus()  # a text field shows its focus ring (:focus-visible) whichever way it got focus
    colours = page.evaluate("""() => {
        const css = (el) => getComputedStyle(el);
        const input = document.activeElement, form = input.closest('form');
        return {
            page: css(document.body).backgroundColor, text: css(document.body).color,
            form: css(form).backgroundColor, input: css(input).backgroundColor,
            border: css(input).borderTopColor, ring: css(input).outlineColor,
            ringStyle: css(input).outlineStyle,
        };
    }""")
    shoot(page, artifacts, f"theme-{scheme}")
    page.context.close()
    assert not problems, problems

    dark = _luminance(colours["page"]) < 0.05
    assert dark == (scheme == "dark"), colours
    assert _contrast(colours["text"], colours["page"]) >= 7, colours
    assert colours["ringStyle"] == "solid"
    for behind in ("page", "form"):  # the ring, 2 px off the field, lies on the form (or the page)
        assert _contrast(colours["ring"], colours[behind]) >= 3, (behind, colours)
    for beside in ("input", "form"):
        assert _contrast(colours["border"], colours[beside]) >= 3, (beside, colours)


def test_a_refused_job_shows_the_error_bodys_message_by_the_field_it_names(
    browser: Browser, api: str, dataset: dict[str, Any]
) -> None:
    page, problems = _open(browser, api)
    page.goto(f"/#/jobs?dataset={dataset['id']}")
    expect(page.get_by_label("Dataset")).to_have_value(dataset["id"])
    page.get_by_label("Teacher base model").fill("bert-base-cased")
    page.get_by_role("button", name="Start job").click()
    slot = page.locator('[data-error-for="teacher.base_model"]')
    expect(slot).to_contain_text("'bert-base-cased' cannot be loaded as a base model")
    expect(page.get_by_label("Teacher base model")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"#/jobs\?"))  # no job was started: still on the form
    page.context.close()
    assert [p for p in problems if "422" not in p] == [], problems
