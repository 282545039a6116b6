"""Screenshots of the dashboard for docs/screenshots/, taken from a finished job on a running service.

    python scripts/screenshots.py --url http://127.0.0.1:8000 --job job_... --model mdl_... --out DIR

Needs Debian's chromium (``/usr/bin/chromium``, or ``TAGDISTILL_TEST_CHROMIUM``) and playwright (the
``dev`` extra). Try it tags one sentence with the model's student and teacher twice and is shot after
the second call, so the times shown are those of loaded models.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

SENTENCE = "Jacques Chirac met Helmut Kohl in Bonn on Tuesday to discuss the European Union budget."


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--job", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chromium = os.environ.get("TAGDISTILL_TEST_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def shot(route: str, name: str, act: Callable[[Page], None] | None = None) -> None:
            page.goto(args.url + route)
            if act:
                act(page)
            page.wait_for_timeout(1500)  # charts and event streams settle
            page.screenshot(path=str(args.out / f"{name}.png"), full_page=True)

        shot("/#/datasets", "datasets")
        shot("/#/jobs", "jobs")
        shot(f"/#/jobs/{args.job}", "job")
        shot(f"/#/models?model={args.model}", "models")
        shot(f"/#/try?model={args.model}", "try", act=tag_twice)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.goto(f"{args.url}/#/jobs/{args.job}")
        phone.wait_for_timeout(2500)
        phone.screenshot(path=str(args.out / "job-phone.png"), full_page=True)
        browser.close()
    print(f"wrote 6 screenshots to {args.out}")


def tag_twice(page: Page) -> None:
    page.get_by_label("Text").fill(SENTENCE)
    for _ in range(2):  # the first call loads both models
        page.get_by_role("button", name="Tag", exact=True).click()
        page.get_by_text("tagging on the server").first.wait_for(timeout=120_000)
        page.wait_for_timeout(3000)


if __name__ == "__main__":
    main()
