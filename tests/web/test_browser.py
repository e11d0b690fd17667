"""A real browser (Debian's chromium, driven by Playwright) on a real ``rlreg serve``.

One browser for the session, one server for the session (``served``). Screenshots of every page go
to ``<pytest's base temp>/screenshots/`` (printed at the end of the session).
"""

from __future__ import annotations

import time

import pytest
from browser import launch, unavailable
from test_feed import committed, snapshot_in_another_process
from webtoys import HOSTILE, MODEL, OTHER, RETURNS

LIVE_WITHIN = 2.0  # seconds from a snapshot's commit in another process to its row in the page


@pytest.fixture(scope="module")
def browser():
    """One chromium for the tests of this module (Playwright's sync API then leaves no loop behind)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install 'rlreg[test]')")
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def problems() -> list[str]:
    """What went wrong in the page: script errors, dialogs, failed loads, requests to other hosts."""
    return []


@pytest.fixture
def page(browser, served, problems):
    context = browser.new_context(viewport={"width": 1100, "height": 800}, base_url=served[0].url)
    tab = context.new_page()
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    tab.on("request", lambda r: problems.append(f"left the server: {r.url}")
           if not r.url.startswith((served[0].url, "data:")) else None)
    yield tab
    context.close()
    assert not problems, problems  # no script error, no alert from hostile text, nothing fetched elsewhere


def test_models_page_then_follow_a_model(page, shots):
    page.goto("/")
    page.screenshot(path=shots / "models.png", full_page=True)
    assert page.locator("#models").inner_text().count("\n") >= 2
    page.get_by_role("link", name=MODEL, exact=True).click()
    page.wait_for_url(f"**/models/{MODEL}")
    assert page.locator("#model-name").inner_text() == MODEL
    assert page.locator("#versions tbody tr").count() == len(RETURNS)
    assert page.locator("#chart circle.point").count() == len(RETURNS)
    page.screenshot(path=shots / "model.png", full_page=True)


def test_search_box(page):
    page.goto("/")
    page.fill("input[name=q]", "walk")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=walk")
    assert page.locator("a.model-link").all_inner_texts() == [OTHER]


def test_sort_by_a_metadata_key(page, shots):
    page.goto(f"/models/{MODEL}")
    page.locator("#versions th a.sort-link", has_text="mean_return").click()
    page.wait_for_url("**sort=-metadata.mean_return**")
    shown = [int(t) for t in page.locator("#versions tbody tr td:first-child a").all_inner_texts()]
    by_return = sorted(range(1, len(RETURNS) + 1), key=lambda v: -RETURNS[v - 1])
    assert shown[: len(RETURNS)] == by_return
    page.screenshot(path=shots / "model-sorted.png", full_page=True)


def test_version_page_renders_hostile_text_as_text(page, shots):
    page.goto(f"/models/{MODEL}/3")
    assert HOSTILE in page.locator("#metadata").inner_text()
    assert page.locator("#ref").input_value() == f"rlreg://{MODEL}/3"
    assert page.locator(".copy-button").is_visible()  # the script ran
    page.screenshot(path=shots / "version.png", full_page=True)


def test_open_a_diff(page, shots):
    page.goto(f"/models/{MODEL}/4")
    page.get_by_role("link", name="diff with 3").click()
    page.wait_for_url(f"**/diff/{MODEL}?a=3&b=4")
    assert page.locator("#diff-bars rect.bar-fill").count() >= 1
    assert "mean_return" in page.locator("#metadata-changes").inner_text()
    page.fill("input[name=a]", "1")
    page.fill("input[name=b]", "@best")
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url("**a=1&b=%40best")
    assert "1 changed" in page.locator("#diff-summary").inner_text()
    page.screenshot(path=shots / "diff.png", full_page=True)


def test_live_feed_shows_another_process_snapshot_within_2s(page, shots, served):
    server, place = served
    page.goto("/events")
    page.wait_for_selector("#live-status.on", timeout=15_000)
    writer = snapshot_in_another_process(place, OTHER)
    row = page.locator("#events-body tr.fresh").first
    row.wait_for(timeout=120_000)
    appeared = time.time()
    made = committed(writer)
    assert row.get_attribute("data-position") == str(made["position"])
    assert OTHER in row.inner_text() and "VersionRecorded" in row.inner_text()
    assert appeared - made["committed"] < LIVE_WITHIN, f"the row took {appeared - made['committed']:.2f} s"
    page.screenshot(path=shots / "events.png", full_page=True)


def test_error_page_in_the_browser(page, shots, problems):
    response = page.goto("/models/nobody")
    assert response.status == 404
    assert problems == ["Failed to load resource: the server responded with a status of 404 (Not Found)"]
    problems.clear()
    assert "no model named 'nobody'" in page.locator("#error-message").inner_text()
    page.screenshot(path=shots / "not-found.png")


def _live_requests(page, answer) -> list[float]:
    """Route the page's live-feed requests to ``answer(route)``; the times they were made."""
    made: list[float] = []

    def handle(route):
        made.append(time.monotonic())
        answer(route)

    page.route("**/api/v1/events/live?*", handle)
    return made


def _wait_for_status(page, start: str, seconds: float = 15.0) -> None:
    """Wait until the live status reads ``start...`` (polled: the page's policy forbids evaluated scripts)."""
    deadline = time.monotonic() + seconds
    while not page.locator("#live-status").inner_text().startswith(start):
        assert time.monotonic() < deadline, page.locator("#live-status").inner_text()
        page.wait_for_timeout(50)


def test_a_live_feed_refused_for_good_stops_and_says_why(page, problems):
    """A 4xx (here: a position past the log's end, as after a restore) will not change: the page stops
    asking, and says why, where it retried every 5 s forever."""
    page.add_init_script("window.rlregRetryMs = 200")
    body = '{"error": {"message": "follow after position 99: the log ends at position 7"}}'
    made = _live_requests(page, lambda route: route.fulfill(status=404, content_type="application/json", body=body))
    page.goto("/events")
    _wait_for_status(page, "stopped")
    page.wait_for_timeout(2000)  # ten first delays: a page that retried would have asked again
    assert "the log ends at position 7" in page.locator("#live-status").inner_text()
    assert len(made) == 2, f"{len(made)} requests: the feed, and the request asking why it was closed"
    problems[:] = [p for p in problems if "404" not in p]  # (the two refusals, as the browser logs them)


def test_a_live_feed_refused_for_now_retries_less_and_less_often_then_goes_live(page, problems):
    page.add_init_script("window.rlregRetryMs = 200")
    down = [True]
    made = _live_requests(page, lambda route: route.fulfill(status=503, content_type="application/json",
                                                            body='{"error": {"message": "down"}}')
                          if down[0] else route.continue_())
    page.goto("/events")
    _wait_for_status(page, "offline")
    page.wait_for_timeout(3500)  # 200 + 400 + 800 + 1600 ms: four more feeds and their four questions
    times = made[::2]  # each feed's first request (the second is the question why it was closed)
    gaps = [b - a for a, b in zip(times, times[1:])]
    # (each gap also holds a request and its question: under load the first ones vary, the doubling shows)
    assert 3 <= len(times) <= 6 and gaps[-1] >= 2 * gaps[0] and gaps[-1] >= 0.7, gaps
    down[0] = False
    page.wait_for_selector("#live-status.on", timeout=15_000)  # the database is back: live again
    problems[:] = [p for p in problems if "503" not in p]
