"""The page in a real browser (Debian's Chromium through Playwright): run a text, visit every tab, walk steps.

Screenshots of every tab go to artifacts/screenshots/. The browser may reach nothing but the app on
loopback: every other request is blocked and counted, and the test fails if the page tried any.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apptools import REPO, running_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
TIMEOUT_MS = 60_000
TABS = {  # tab label -> number of plots it shows
    "1 · Tokenization": 0,
    "2 · Positional encodings": 3,
    "3 · Step-through": 1,
    "4 · Attention": 4,
    "5 · Output": 2,
}
LOADED_PLOTS = """(count) => {
    const panel = Array.from(document.querySelectorAll('[role=tabpanel]')).find(p => p.offsetParent !== null);
    if (!panel) return false;
    const images = Array.from(panel.querySelectorAll('.plot img'));
    return images.length === count && images.every(img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0);
}"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app-browser")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); the browser test needs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.blocked = []  # requests that would have left loopback

    def only_loopback(route):
        url = route.request.url
        if url.startswith((app_url, "data:", "blob:")):
            route.continue_()
        else:
            page.blocked.append(url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(app_url)
    yield page
    context.close()


def error_toasts(page) -> list[str]:
    return [text.strip() for text in page.locator(".toast-body.error").all_inner_texts()]


def wait_for_plots(page, count: int) -> list[str]:
    page.wait_for_function(LOADED_PLOTS, arg=count, timeout=TIMEOUT_MS)
    panel = page.locator("[role=tabpanel]:visible")
    return [src for src in panel.locator(".plot img").evaluate_all("images => images.map(img => img.src)")]


def step_heading(page) -> str:
    return page.locator("#step-text h3").inner_text()


def test_run_visit_every_tab_and_walk_the_steps(page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    status = page.locator("#status")
    status.get_by_text(re.compile("tokens")).wait_for()  # the example text runs when the page opens

    page.locator("#text-a textarea").fill("The quick brown fox jumps over the lazy dog.")
    page.locator("#text-b textarea").fill("A fast fox leaps over a sleepy hound.")
    page.locator("#run").click()
    status.get_by_text(re.compile(r"\d+ tokens.*\(pair\)")).wait_for()
    chips = page.locator(".tok-chips .chip")
    chips.filter(has_text="hound").wait_for()
    assert chips.first.inner_text() == "[CLS]" and chips.last.inner_text() == "[SEP]"
    page.locator("#token-table").get_by_text("quick", exact=True).first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "1-tokenization.png"), full_page=True)

    for index, (label, plots) in enumerate(TABS.items(), start=1):
        page.get_by_role("tab", name=label).click()
        if plots:
            sources = wait_for_plots(page, plots)
            assert len(set(sources)) == plots, f"{label}: every plot is its own image"
        page.screenshot(path=str(SCREENSHOTS / f"{index}-{label.split('· ')[1].split()[0].lower()}.png"), full_page=True)
        assert not error_toasts(page), f"{label}: {error_toasts(page)}"

    # Walk the record: Next goes forward step by step into layer 0, Previous goes back.
    page.get_by_role("tab", name="3 · Step-through").click()
    wait_for_plots(page, 1)
    assert step_heading(page).startswith("Step 1 of ")
    for expected in ["embeddings.position", "embeddings.segment", "embeddings.sum", "embeddings.norm", "layers.0.attn.q"]:
        before = wait_for_plots(page, 1)
        page.locator("#next").click()
        page.locator("#step-text h3").filter(has_text=expected).wait_for()
        assert wait_for_plots(page, 1) != before, "each step draws its own values"
    assert step_heading(page).startswith("Step 6 of ")
    assert page.get_by_label("Part").input_value() == "Layer 0"
    page.locator("#previous").click()
    page.locator("#step-text h3").filter(has_text="embeddings.norm").wait_for()
    assert page.locator("#step-text .katex").count() >= 1, "the step's formula is rendered"
    page.screenshot(path=str(SCREENSHOTS / "3-step-walk.png"), full_page=True)

    # Moving the layer slider redraws the attention plots.
    page.get_by_role("tab", name="4 · Attention").click()
    before = wait_for_plots(page, 4)
    layer_box = page.get_by_label("number input for layer")
    layer_box.fill("3")
    layer_box.press("Enter")
    page.wait_for_function(
        """(old) => { const imgs = Array.from(document.querySelectorAll('[role=tabpanel] .plot img'))
                      .filter(i => i.offsetParent !== null);
                      return imgs.length === 4 && imgs[0].src !== old[0] && imgs[2].src !== old[2]
                             && imgs.every(i => i.naturalWidth > 0); }""",
        arg=before,
    )
    assert not error_toasts(page)
    assert page.blocked == [], f"the page tried to reach beyond loopback: {page.blocked}"


def test_empty_text_warns_and_keeps_the_page_working(page):
    status = page.locator("#status")
    status.get_by_text(re.compile("tokens")).wait_for()
    page.locator("#text-a textarea").fill("   ")
    page.locator("#run").click()
    page.locator(".toast-body.warning").filter(has_text="The text is empty").first.wait_for()
    status.get_by_text("The text is empty").wait_for()
    assert not error_toasts(page)
    page.locator("#text-a textarea").fill("Back to normal.")
    page.locator("#run").click()
    status.get_by_text(re.compile(r"\d+ tokens")).wait_for()
    page.locator(".tok-chips .chip").filter(has_text="normal").wait_for()


def test_a_bad_model_id_explains_itself_and_the_default_stays(page):
    info = page.locator("#model-info")
    info.get_by_text("all-MiniLM-L6-v2").first.wait_for()
    page.locator("#repo input, #repo textarea").first.fill("no-such-org/no-such-model")
    page.locator("#load").click()
    info.get_by_text("Not loaded").wait_for()
    assert "HF_HUB_OFFLINE" in info.inner_text() and "all-MiniLM-L6-v2" in info.inner_text()
    assert not error_toasts(page)
    page.get_by_role("tab", name="4 · Attention").click()
    wait_for_plots(page, 4)
    page.screenshot(path=str(SCREENSHOTS / "model-not-loaded.png"), full_page=True)
