"""The page in a real browser: Debian's headless Chromium driven by Playwright, against the real app.

A student clicks a suggested question, reads the streamed answer and its source chips, opens the
excerpts, switches to Socratic mode and sends hostile HTML that must stay inert; an instructor logs
in, saves a broken template (refused with its line), fixes it (live at once). Every request the page
makes must stay on 127.0.0.1. The chat's screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import INSTRUCTOR_PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is missing: run `make test`")
ANSWER_TIMEOUT = 120_000  # ms: the packaged model on a shared 2-core machine


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],  # fmt: skip
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, served_app):
    context = browser.new_context(locale="es-ES", viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    page.requests = []  # every URL the page asked for
    page.dialogs = []  # any alert() means a script ran
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(served_app[0])
    page.wait_for_selector("#tutor-chat")
    yield page
    context.close()
    outside = [u for u in page.requests if urlparse(u).hostname not in ("127.0.0.1", "localhost") and
               not u.startswith(("data:", "blob:"))]  # fmt: skip
    assert not outside, f"the page fetched from outside the machine: {outside[:5]}"
    assert not page.dialogs, f"a script from a message ran: {page.dialogs}"


def last_reply(page):
    return page.locator("#tutor-chat .message.bot").last  # Gradio's assistant message bubbles


def wait_answered(page, replies: int = 1) -> None:
    """The n-th reply is final when the live region (what a screen reader announces) says so."""
    page.wait_for_selector(f"#tutor-live [aria-live='polite'][data-replies='{replies}']", state="attached",
                           timeout=ANSWER_TIMEOUT)  # fmt: skip


def test_a_student_asks_from_a_suggestion_and_reads_the_sources(page) -> None:
    suggestion = page.get_by_text("¿Qué mejoras introdujo RoBERTa respecto a BERT?")
    suggestion.click()
    wait_answered(page)
    reply = last_reply(page)
    chip = reply.locator("code", has_text="§3.3.3")
    assert chip.count() >= 1 and chip.first.is_visible()
    summary = reply.locator("summary")
    summary.first.click()
    assert reply.locator("details blockquote").first.is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)

    # The mode is visible and can change mid-conversation: the next question gets a hint, not the answer.
    page.get_by_label("Socrático").check()
    page.locator("#tutor-question textarea").fill("¿Para qué sirve la cuantización?")
    page.locator("#tutor-send").click()
    wait_answered(page, 2)
    assert "§" in last_reply(page).inner_text()
    assert page.locator("#tutor-chat .message.user").count() == 2


def test_html_in_a_message_stays_inert_and_feedback_is_kept(page, served_app) -> None:
    hostile = "<script>alert(1)</script> <img src=x onerror=alert(2)> ![p](http://evil.example/p.png) hola"
    page.locator("#tutor-question textarea").fill(hostile)
    page.locator("#tutor-question textarea").press("Enter")
    wait_answered(page)
    user = page.locator("#tutor-chat .message.user").last
    assert "<script>" in user.inner_text()  # shown as text
    assert user.locator("img, script").count() == 0

    # Thumbs down with a comment is stored on this machine; a new conversation starts from the welcome.
    page.locator("#tutor-chat").get_by_role("button", name="No me gusta").last.click()
    page.get_by_label("¿Qué faltó o qué estaba mal? (opcional)").fill("no entendí la respuesta")
    page.get_by_role("button", name="Enviar comentario").click()
    page.locator("#tutor-comment").wait_for(state="hidden", timeout=30_000)  # the comment is in
    assert "Gracias" in page.locator("#tutor-status").inner_text()
    assert any(r["comment"] == "no entendí la respuesta" for r in served_app[2].analytics().thumbs_down)
    page.locator("#tutor-new").click()
    page.get_by_text("¿Cómo funciona RAG y para qué sirve?").wait_for(timeout=30_000)
    assert page.locator("#tutor-chat .message").count() == 0


def test_keyboard_only_and_labels(page) -> None:
    page.locator("#tutor-question textarea").focus()
    page.keyboard.type("¿Qué es un modelo generativo?")
    page.keyboard.press("Enter")
    wait_answered(page)
    assert "§" in last_reply(page).inner_text()
    assert page.get_by_label("Tu pregunta").count() == 1
    assert page.get_by_role("group", name="Modo").count() == 1
    unnamed = page.evaluate("""() => [...document.querySelectorAll('input, textarea, button, select')]
        .filter(e => e.type !== 'hidden' && e.offsetParent !== null)
        .filter(e => !(e.getAttribute('aria-label') || (e.labels && e.labels.length) || e.innerText.trim()))
        .map(e => e.outerHTML.slice(0, 80))""")
    assert not unnamed, unnamed
    live = page.locator("#tutor-live [aria-live='polite']")
    assert live.count() == 1


def test_english_browser_gets_english_labels_and_a_phone_fits(browser, served_app) -> None:
    context = browser.new_context(locale="en-US", viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(served_app[0])
    page.wait_for_selector("#tutor-chat")
    assert page.get_by_role("button", name="New conversation").count() == 1
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    context.close()


def test_an_instructor_fixes_a_broken_template_and_sees_it_live(page, served_app) -> None:
    tutor = served_app[1]
    page.get_by_role("tab", name="Instructor").click()
    page.get_by_label("Contraseña del profesorado").fill(INSTRUCTOR_PASSWORD)
    page.locator("#instructor-login").click()
    template = page.locator("#instructor-template input")
    template.wait_for(state="visible", timeout=30_000)
    template.fill("replies/es/no_passages")
    template.press("Enter")
    editor = page.locator("#instructor-editor .cm-content")
    page.wait_for_function(
        "() => (document.querySelector('#instructor-editor .cm-content')?.innerText || '').includes('variables')",
        timeout=30_000,
    )
    good = tutor.prompts.reply("no_passages", "es")
    editor.fill("---\nvariables: []\n---\n" + good + " $contexto\n")
    page.locator("#instructor-save").click()
    page.locator("#instructor-template-status").get_by_text("contexto").wait_for(timeout=30_000)
    assert "line" in page.locator("#instructor-template-status").inner_text()
    assert tutor.prompts.reply("no_passages", "es") == good  # the broken edit never served
    editor.fill("---\nvariables: []\n---\n" + good + " Revisa el índice del curso.\n")
    page.locator("#instructor-save").click()
    page.wait_for_function("() => document.querySelector('#instructor-template-status').innerText.includes('Guardad')",
                           timeout=30_000)  # fmt: skip
    assert tutor.prompts.reply("no_passages", "es").endswith("Revisa el índice del curso.")
    page.get_by_role("tab", name="Analíticas").click()
    page.locator("#instructor-refresh").click()
    page.wait_for_timeout(1500)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "instructor.png"), full_page=True)


def test_practice_mode_grades_an_answer_and_shows_progress_that_survives_a_reload(page) -> None:
    page.get_by_label("Practicar").check()
    question = page.locator("#tutor-question textarea")
    question.fill("pregúntame sobre la sección 3.3")
    question.press("Enter")
    wait_answered(page, 1)
    question.fill("no lo sé")
    question.press("Enter")
    wait_answered(page, 2)
    page.locator("#tutor-progress-panel").get_by_text("Tu progreso por sección").click()
    assert "§3.3" in page.locator("#tutor-progress").inner_text()
    # The progress is kept by this browser (no account): a reload shows it again.
    page.reload()
    page.wait_for_selector("#tutor-chat")
    page.locator("#tutor-progress-panel").get_by_text("Tu progreso por sección").click()
    page.wait_for_function("() => (document.querySelector('#tutor-progress')?.innerText || '').includes('§3.3')")


CONTRAST = """() => {
  const lum = c => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(v => v / 255)
      .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const background = el => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
      if (c && !c.startsWith('rgba(0, 0, 0, 0)') && !c.endsWith(', 0)')) return c; } return 'rgb(255, 255, 255)'; };
  const worst = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement; const text = walker.currentNode.textContent.trim();
    if (!text || !el || el.offsetParent === null || el.closest('.sr-only, [aria-hidden=true]')) continue;
    if (el.closest('#tutor-question') && el.tagName === 'TEXTAREA') continue;
    const a = lum(getComputedStyle(el).color), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push([text.slice(0, 40), Math.round(ratio * 100) / 100]);
  }
  return worst;
}"""


def test_text_contrast_meets_wcag_aa(page) -> None:
    """Every visible text of the page against its background: at least 4.5:1 (WCAG 2 AA, normal text)."""
    assert page.evaluate(CONTRAST) == []
