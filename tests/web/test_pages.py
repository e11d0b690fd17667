"""The HTML pages through the app's ASGI interface: what each shows, escaping, error pages."""

from __future__ import annotations

import re

import pytest
from webtoys import HOSTILE, MODEL, OTHER, RETURNS


def page(client, url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def test_models_page_lists_models_with_versions_latest_and_aliases(client):
    html = page(client, "/")
    assert f'href="/models/{MODEL}"' in html and f'href="/models/{OTHER}"' in html
    assert "best→4" in html and "prod→4" in html
    assert re.search(r'<td class="num">5</td>', html)


def test_search_box_filters_models(client):
    html = page(client, "/?q=cart")
    assert MODEL in html and f'href="/models/{OTHER}"' not in html
    assert "No model matches" in page(client, "/?q=zzz")


def test_model_page_has_versions_metadata_columns_chart_and_alias_history(client):
    html = page(client, f"/models/{MODEL}")
    for version in range(1, 6):
        assert f'href="/models/{MODEL}/{version}"' in html
    assert "mean_return" in html and "iteration" in html
    assert '<svg class="chart"' in html and 'class="series"' in html
    assert html.count('<circle class="point"') == len(RETURNS)
    history = html.split('id="alias-history"')[1]
    assert history.index("prod") < history.index("best")  # newest first: prod moved last


def test_chart_plots_the_asked_key_in_version_order(client):
    html = page(client, f"/models/{MODEL}?chart=mean_return")
    titles = re.findall(r"<title>version (\d+): mean_return = ([\d.]+)</title>", html)
    assert [(int(v), float(x)) for v, x in titles] == list(enumerate(RETURNS, start=1))
    ys = [float(y) for y in re.findall(r'<circle class="point" cx="[\d.]+" cy="([\d.]+)"', html)]
    assert ys.index(min(ys)) == RETURNS.index(max(RETURNS))  # the best return is drawn highest (smallest y)


def test_chart_of_a_key_without_numbers_says_so(client):
    assert "No version has a number" in page(client, f"/models/{MODEL}?chart=note")


def test_version_page_shows_spec_tensors_state_metadata_and_reference(client, read_registry):
    html = page(client, f"/models/{MODEL}/4")
    assert f'value="rlreg://{MODEL}/4"' in html
    assert "PPOTorchRLModule" in html and "Box(shape=(4,), dtype=float32)" in html and "Discrete(2)" in html
    for name, entry in read_registry.manifest(MODEL, 4)["tensors"].items():
        assert f"<code>{name}</code>" in html
        assert f'<td class="num">{entry["nbytes"]}</td>' in html
    assert "95.5" in html
    assert "best" in html and "prod" in html


def test_version_page_by_alias_shows_that_version(client):
    assert '<span id="version-number">4</span>' in page(client, f"/models/{MODEL}@best")


def test_diff_page_has_bars_and_metadata_changes(client):
    html = page(client, f"/diff/{MODEL}?a=1&b=@best")
    assert 'id="diff-bars"' in html and 'class="bar-fill"' in html
    assert "metadata-changes" in html and "12.5" in html and "95.5" in html
    assert "1 changed" in html


def test_diff_page_defaults_to_the_last_two_versions(client):
    assert f'<a href="/models/{MODEL}/4">4</a> → <a href="/models/{MODEL}/5">5</a>' in page(client, f"/diff/{MODEL}")


def test_diff_page_defaults_to_the_two_newest_versions_still_there(writable):
    """Version 4 deleted: the default diff is 3 → 5 (it was 4 → 5: a 404 page)."""
    c, reg = writable
    reg.delete_version(MODEL, 4, reason="gone", force=True)
    r = c.get(f"/diff/{MODEL}")
    assert r.status_code == 200, r.text[:300]
    assert f'<a href="/models/{MODEL}/3">3</a> → <a href="/models/{MODEL}/5">5</a>' in r.text


def test_events_page_newest_first_paged_by_position(client, read_registry):
    html = page(client, "/events?limit=3")
    positions = [int(p) for p in re.findall(r'<tr data-position="(\d+)">', html)]
    head = read_registry.head()
    assert positions == [head, head - 1, head - 2]
    older = re.search(r'id="older" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert f"before={head - 3}" in older and "limit=3" in older  # (the older page kept 50 before)
    nxt = [int(p) for p in re.findall(r'<tr data-position="(\d+)">', page(client, older))]
    assert nxt == [head - 3, head - 4, head - 5]


def test_events_page_filters_by_model_and_type(client):
    html = page(client, f"/events?model={MODEL}&type=AliasSet")
    rows = re.findall(r"<td>(\w+)</td>\s*<td class=\"time\">", html)
    assert rows == ["AliasSet"] * 3


def test_hostile_text_renders_as_text(client):
    for url in (f"/models/{MODEL}", f"/models/{MODEL}/3", f"/diff/{MODEL}?a=2&b=3"):
        html = page(client, url)
        assert HOSTILE not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


def test_pages_load_only_their_own_script_and_stylesheet(client):
    html = page(client, f"/models/{MODEL}")
    assert re.findall(r'<script[^>]*src="([^"]+)"', html) == ["/static/rlreg.js"]
    assert "<script>" not in html  # no inline script: the CSP forbids it anyway
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert client.get("/static/rlreg.js").status_code == 200
    assert client.get("/static/rlreg.css").status_code == 200


# --- error pages --------------------------------------------------------------------------------


@pytest.mark.parametrize("url, fragment", [
    ("/models/nobody", "no model named &#39;nobody&#39;"),
    (f"/models/{MODEL}/42", "has no version 42"),
    (f"/models/{MODEL}@nosuch", "has no alias &#39;nosuch&#39;"),
    ("/diff/nobody", "no model named"),
    ("/no/such/page", "no page at"),
    ("/static/../pyproject.toml", "no page at"),
    ("/static/%2e%2e/pyproject.toml", ""),
])
def test_unknown_pages_are_404_pages(client, url, fragment):
    html = page(client, url, 404)
    assert "404" in html and fragment in html


def test_a_script_tag_in_the_url_is_shown_as_text(client):
    html = page(client, "/models/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 400)
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_bad_query_parameter_is_a_400_page(client):
    assert "limit=&#39;x&#39;" in page(client, f"/models/{MODEL}?limit=x", 400)


def test_malformed_where_is_a_400_page_naming_the_token(client):
    html = page(client, f"/models/{MODEL}?where=metadata.mean_return%20%3E%3E%201", 400)
    assert 'id="where-error"' in html and "&gt;" in html


def test_the_registrys_own_events_are_not_linked_to_a_model_page(client):
    """``$registry`` is a stream, not a model: its rows linked to /models/$registry, a 400."""
    html = page(client, "/events?model=$registry")
    assert "StorageBound" in html and 'href="/models/$registry"' not in html


def test_a_diff_page_of_a_path_naming_a_version_is_400(client):
    for path in (f"/diff/{MODEL}@prod?a=1&b=2", f"/diff/{MODEL}/3?a=1&b=2"):
        assert client.get(path).status_code == 400, path
