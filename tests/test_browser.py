"""The page in a real browser (Debian's Chromium through Playwright): run a text, visit every tab, walk steps.

Screenshots of every tab go to artifacts/screenshots/. The browser may reach nothing but the app on
loopback: every other request is blocked and counted, and the test fails if the page tried any.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apptools import REPO, TINY_MLM_REPOS, running_app

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
    "6 · Masked words": 0,  # the bundled model has no masked-LM head: a sentence says so
    "7 · Head ablation": 1,
    "8 · Word in context": 2,
    "9 · Weights": 0,  # two tables
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


def wait_until_idle(page) -> None:
    """Wait until no output of the page is still waiting for the server (a tab's redraw can land after a click)."""
    page.wait_for_function("""() => Array.from(document.querySelectorAll('[data-testid=status-tracker]'))
                                   .every(tracker => tracker.classList.contains('hide'))""", timeout=TIMEOUT_MS)


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
    wait_until_idle(page)  # the tab redraws step 1 on opening: let that land before walking on
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


def test_masked_words_ablation_word_weights_and_downloads(page):
    """The new tabs: a clear sentence for a model without a head, then a tiny masked-LM model from the offline
    Hub cache predicting words, a token clicked to mask it, the logit lens, ablation, one word in two contexts,
    the weight table, the LayerNorm diagram and downloads of a figure, its tensors and the whole run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#status").get_by_text(re.compile("tokens")).wait_for()
    page.get_by_role("tab", name="6 · Masked words").click()
    page.locator("#masked-note").get_by_text("has no masked-language-model head").wait_for()
    assert not page.locator("#fill-text").is_visible(), "no fill-mask controls without a head"

    page.get_by_role("tab", name="7 · Head ablation").click()
    wait_for_plots(page, 1)
    page.locator("#ablation-text").get_by_text(re.compile(r"Cosine of the sentence embedding to the original: 0\.\d+")).wait_for()
    page.get_by_role("tab", name="8 · Word in context").click()
    wait_for_plots(page, 2)
    page.locator("#word-text").get_by_text(re.compile(r"“bank” is token")).wait_for()

    # Downloads from this tab: the figure as SVG, then the whole run.
    page.locator("#export").get_by_text("Download this tab's figure").click()
    page.locator("#export-svg").click()
    link = page.locator('#export-file a[download="word-cosine-by-layer.svg"]')
    link.wait_for()
    response = page.request.get(link.get_attribute("href"))
    assert response.ok and response.body().lstrip().startswith(b"<?xml") and b"<svg" in response.body()
    page.locator("#export-run").click()
    page.locator('#export-file a[download="run.safetensors"]').wait_for()

    page.get_by_role("tab", name="9 · Weights").click()
    page.locator("#weight-table").get_by_text("embeddings.word_embeddings.weight").wait_for()
    page.locator("#weight-totals").get_by_text("layer 5", exact=True).wait_for()

    page.get_by_role("tab", name="3 · Step-through").click()
    page.locator("#norm-placement").get_by_text("where the LayerNorms go").click()
    assert page.locator("#norm-diagram svg text").filter(has_text="pre-LN").count() == 1

    # A model with a masked-LM head, from the offline Hub cache.
    page.locator("#repo input, #repo textarea").first.fill(TINY_MLM_REPOS["bert"])
    page.locator("#load").click()
    page.locator("#model-info").get_by_text("tiny-bert-mlm").first.wait_for()
    page.get_by_role("tab", name="6 · Masked words").click()
    wait_for_plots(page, 2)
    page.locator("#fill-table").get_by_text("probability").first.wait_for()
    before = wait_for_plots(page, 2)
    page.locator("#fill-tokens").get_by_text("river", exact=True).click()
    page.wait_for_function("() => document.querySelector('#fill-text textarea').value.split('[MASK]').length === 3")
    page.locator("#masked-note").get_by_text("2 masks").wait_for()
    assert wait_for_plots(page, 2) != before, "masking a second word redraws the predictions"
    page.screenshot(path=str(SCREENSHOTS / "6-masked-words-with-a-head.png"), full_page=True)
    page.get_by_role("tab", name="7 · Head ablation").click()
    page.locator("#ablation-text").get_by_text("Write [MASK] in the text").wait_for()
    wait_for_plots(page, 1)
    page.screenshot(path=str(SCREENSHOTS / "7-head-ablation-tiny-model.png"), full_page=True)
    assert not error_toasts(page), error_toasts(page)
    assert page.blocked == [], f"the page tried to reach beyond loopback: {page.blocked}"
