"""The HTML routes through the Flask test client: status codes, content, escaping, errors."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from service.api import pages
from service.jobs import job_to_dict
from service.loss_store import store_losses
from service.models import Job, Sweep
from service.tokens import digest
from tests.conftest import make_test_app

EVIL = "<script>alert('x')</script>"
SMALL = {"stage": "tensors", "iterations": 20, "N": 4, "D_in": 8, "H": 4, "D_out": 2}


def submit(client: FlaskClient, **fields: object) -> dict:
    response = client.post("/api/v1/jobs", json={**SMALL, **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def html(response) -> str:  # type: ignore[no-untyped-def]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def finish(session: so.Session, job_id: int, losses: list[float]) -> None:
    """Write a finished history straight into the store, as the worker would."""
    job = session.get(Job, job_id)
    assert job is not None
    store_losses(session, job_id, 0, losses)
    job.status, job.steps_done, job.final_loss = "succeeded", len(losses), losses[-1]
    job.min_loss = min(losses)
    job.min_loss_step = losses.index(job.min_loss)
    session.commit()


def test_dashboard_lists_jobs_and_escapes_names(client: FlaskClient) -> None:
    plain = submit(client, name="plain run")
    evil = submit(client, name=EVIL)
    response = client.get("/")
    assert response.status_code == 200
    page = html(response)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert EVIL not in page
    # Newest first, each row marked with its id for the live script.
    rows = re.findall(r'<tr data-job-id="(\d+)"', page)
    assert rows == [str(evil["id"]), str(plain["id"])]
    assert 'class="badge badge-queued"' in page
    assert 'id="jobs-empty" hidden' in page
    assert "Content-Security-Policy" in response.headers
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_dashboard_without_jobs_says_so(client: FlaskClient) -> None:
    page = html(client.get("/"))
    assert "No jobs yet" in page
    assert 'id="jobs-empty" hidden' not in page
    assert "No sweeps yet" in page


def test_dashboard_shows_sweep_progress(client: FlaskClient, session: so.Session) -> None:
    sweep = Sweep(name="lr <sweep>", seed=1, request={}, varied=["lr"], job_count=2)
    session.add(sweep)
    session.commit()
    ids = [submit(client, lr=lr)["id"] for lr in (1e-6, 1e-5)]
    for job_id in ids:
        session.get(Job, job_id).sweep_id = sweep.id
    session.commit()
    finish(session, ids[0], [4.0, 2.5])
    page = html(client.get("/"))
    assert f'data-sweep-id="{sweep.id}"' in page
    assert "lr &lt;sweep&gt;" in page
    assert ">1/2<" in page
    assert ">2.5<" in page


def test_dashboard_lists_sweeps_before_the_jobs(client: FlaskClient, session: so.Session) -> None:
    # Given a sweep and more jobs than the dashboard shows.
    session.add(Sweep(name="first", seed=1, request={}, varied=["lr"], job_count=0))
    session.commit()
    for _ in range(3):
        submit(client)
    page = html(client.get("/"))
    # Then the sweeps come first, above the job rows.
    assert page.index('id="sweeps"') < page.index('id="jobs"')
    assert page.index("Recent sweeps") < page.index("Recent jobs")


def test_job_page_shows_every_field_escaped(client: FlaskClient, session: so.Session) -> None:
    job = submit(client, name=EVIL, tags=["a<b", "c"])
    response = client.get(f"/jobs/{job['id']}")
    assert response.status_code == 200
    page = html(response)
    assert EVIL not in page
    assert "&lt;script&gt;" in page
    fields = re.findall(r'<dd data-field="([a-z_A-Z]+)"', page)
    row = session.get(Job, job["id"])
    assert row is not None
    assert set(fields) == set(job_to_dict(row))
    assert '<dd data-field="tags">a&lt;b, c</dd>' in page
    assert '<dd data-field="lr">1e-06</dd>' in page
    assert '<dd data-field="stack_size">-</dd>' in page  # not yet run
    assert 'id="cancel"' in page
    assert 'id="cancel" type="button" class="danger" hidden' not in page


def test_finished_job_page_hides_cancel(client: FlaskClient, session: so.Session) -> None:
    job = submit(client)
    finish(session, job["id"], [9.0, 3.0, 1.0])
    session.get_one(Job, job["id"]).stack_size = 4
    session.commit()
    page = html(client.get(f"/jobs/{job['id']}"))
    assert 'class="danger" hidden' in page
    assert '<dd data-field="final_loss">1.0</dd>' in page
    assert '<dd data-field="stack_size">4</dd>' in page


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/999999",
        "/sweeps/999999",
        "/compare?jobs=999999",
    ],
)
def test_unknown_ids_get_an_html_404(client: FlaskClient, path: str) -> None:
    response = client.get(path, headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 404
    assert "999999" in html(response)
    assert "404" in response.get_data(as_text=True)
    assert "<h1>404" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "path", ["/jobs/99999999999999999999999", "/sweeps/99999999999999999999999"]
)
def test_ids_no_row_can_have_get_an_html_404(client: FlaskClient, path: str) -> None:
    # Past the database's integer range no route matches: a plain 404 page, never a 500.
    response = client.get(path, headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 404
    assert "<h1>404" in response.get_data(as_text=True)


def test_unknown_url_is_html_for_browsers_and_json_otherwise(client: FlaskClient) -> None:
    browser = client.get("/nowhere", headers={"Accept": "text/html,*/*;q=0.8"})
    assert browser.status_code == 404
    assert "<h1>404" in html(browser)
    plain = client.get("/nowhere")
    assert plain.status_code == 404
    assert plain.get_json()["error"]["code"] == "not_found"
    api = client.get("/api/v1/jobs/999999", headers={"Accept": "text/html"})
    assert api.status_code == 404
    assert api.get_json()["error"]["code"] == "not_found"


def test_compare_labels_name_only_the_fields_that_differ(client: FlaskClient) -> None:
    a = submit(client, lr=1e-6, seed=5, name="a")
    b = submit(client, lr=1e-5, seed=5, name="a")
    for query in (f"jobs={a['id']},{b['id']}", f"jobs={a['id']}&jobs={b['id']}"):
        response = client.get(f"/compare?{query}")
        assert response.status_code == 200
        page = html(response)
        labels = re.findall(r'<span class="label">([^<]*)</span>', page)
        assert labels == ["lr=1e-06", "lr=1e-05"]
        assert "They differ in: <strong>lr</strong>" in page


def test_compare_series_data_is_escaped_json(client: FlaskClient) -> None:
    a = submit(client, name=EVIL, seed=1)
    b = submit(client, name="b", seed=1)
    page = html(client.get(f"/compare?jobs={a['id']},{b['id']}"))
    block = re.search(r'<script type="application/json" id="series">(.*?)</script>', page, re.S)
    assert block is not None
    assert "<script>" not in block.group(1)
    assert "\\u003cscript\\u003e" in block.group(1)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 200),
        ("jobs=", 200),
        ("jobs=abc", 400),
        ("jobs=1;drop", 400),
        ("jobs=-1", 400),
        ("jobs=%C2%B2", 400),
        ("jobs=1234567890123", 400),
    ],
)
def test_compare_query_is_validated(client: FlaskClient, query: str, status: int) -> None:
    response = client.get(f"/compare?{query}")
    assert response.status_code == status
    html(response)


def test_compare_caps_the_number_of_jobs(client: FlaskClient) -> None:
    ids = ",".join(str(i) for i in range(1, 52))
    response = client.get(f"/compare?jobs={ids}")
    assert response.status_code == 400
    assert "at most 50" in html(response)


def test_sweep_leaderboard_is_sorted_by_final_loss(
    client: FlaskClient, session: so.Session
) -> None:
    sweep = Sweep(name="grid", seed=3, request={}, varied=["lr", "optimizer"], job_count=3)
    session.add(sweep)
    session.commit()
    ids = [submit(client, lr=lr, stage="optim")["id"] for lr in (1e-3, 1e-2, 1e-1)]
    for job_id in ids:
        session.get(Job, job_id).sweep_id = sweep.id
    session.commit()
    finish(session, ids[0], [5.0, 3.0])
    finish(session, ids[2], [5.0, 0.5])  # ids[1] has not finished: it ranks last
    response = client.get(f"/sweeps/{sweep.id}")
    assert response.status_code == 200
    page = html(response)
    assert re.findall(r'<tr data-job-id="(\d+)"', page) == [
        str(i) for i in (ids[2], ids[0], ids[1])
    ]
    assert '<th scope="col">lr</th><th scope="col">optimizer</th>' in page
    assert "<td>0.1</td>" in page
    assert "<td>sgd</td>" in page
    assert f'/compare?jobs={ids[2]},{ids[0]}"' in page


def sign_in(client: FlaskClient, secret: str, target: str = "/") -> None:
    """Post the sign-in form as a browser would; the client keeps the cookie."""
    response = client.post(f"/sign-in?next={target}", data={"token": secret})
    assert response.status_code == 303, response.get_data(as_text=True)


PAGES = ["/", "/jobs/1", "/compare?jobs=1", "/sweeps/1", "/sweeps/1/plot.png"]


@pytest.mark.parametrize("path", [*PAGES, "/sweeps/1/best-so-far.svg"])
def test_with_tokens_every_page_redirects_to_the_sign_in(
    database_url: str, broker_url: str, path: str
) -> None:
    app = make_test_app(database_url, broker_url, api_tokens=("s3cret",))
    try:
        client = app.test_client()
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/sign-in?next=")
        assert client.get(response.headers["Location"]).status_code == 200
        # A wrong cookie is no better than none.
        client.set_cookie("trainq_token", "guess")
        assert client.get(path).status_code == 303
        # The scripts and styles carry no data: the sign-in page needs them.
        script = client.get("/static/api.js")
        assert script.status_code == 200
        script.close()
    finally:
        app.extensions["trainq.engine"].dispose()


def test_signing_in_sets_a_strict_httponly_cookie_the_api_ignores(
    database_url: str, broker_url: str
) -> None:
    entry = "reader:read:sha256:" + digest("read-secret").hex()
    app = make_test_app(database_url, broker_url, api_tokens=(entry,))
    try:
        client = app.test_client()
        form = html(client.get("/sign-in?next=/compare"))
        assert 'id="sign-in-form"' in form
        assert 'action="/sign-in?next=/compare"' in form
        wrong = client.post("/sign-in?next=/", data={"token": "nope"})
        assert wrong.status_code == 401
        assert "not a token of this deployment" in html(wrong)
        response = client.post("/sign-in?next=/compare?jobs=", data={"token": "read-secret"})
        assert response.status_code == 303
        assert response.headers["Location"] == "/compare?jobs="
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("trainq_token=read-secret;")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Path=/" in cookie
        assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
        secure = app.test_client().post(
            "/sign-in", data={"token": "read-secret"}, base_url="https://localhost"
        )
        assert "Secure" in secure.headers["Set-Cookie"]
        page = client.get("/")
        assert page.status_code == 200
        assert '<strong data-field="signed-in">reader</strong>' in html(page)
        assert "Content-Security-Policy" in page.headers
        # The cookie opens the pages only: the API still needs its Bearer token.
        assert client.get("/api/v1/jobs").status_code == 401
        assert client.post("/api/v1/jobs", json={"stage": "nn"}).status_code == 401
        bearer = {"Authorization": "Bearer read-secret"}
        assert client.get("/api/v1/jobs", headers=bearer).status_code == 200
        # Signing out forgets the cookie.
        out = client.post("/sign-out")
        assert out.status_code == 303
        assert client.get("/").status_code == 303
    finally:
        app.extensions["trainq.engine"].dispose()


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", ""],
)
def test_the_sign_in_leads_only_to_a_local_path(
    database_url: str, broker_url: str, target: str
) -> None:
    app = make_test_app(database_url, broker_url, api_tokens=("s3cret",))
    try:
        client = app.test_client()
        response = client.post("/sign-in", query_string={"next": target}, data={"token": "s3cret"})
        assert response.headers["Location"] == "/"
    finally:
        app.extensions["trainq.engine"].dispose()


def test_no_sign_in_when_the_api_is_open(client: FlaskClient) -> None:
    page = html(client.get("/"))
    assert 'id="sign-out-form"' not in page
    assert client.get("/sign-in?next=/compare").headers["Location"] == "/compare"


@pytest.mark.parametrize("name", ["api.js", "chart.js", "jobs_table.js", "style.css"])
def test_static_files_are_served_locally(client: FlaskClient, name: str) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert len(response.data) > 500
    response.close()


def test_sweep_leaderboard_shows_the_best_rows_only(
    client: FlaskClient, session: so.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "LEADERBOARD_ROWS", 2)
    sweep = Sweep(name="big", seed=3, request={}, varied=["lr"], job_count=3)
    session.add(sweep)
    session.commit()
    ids = [submit(client, lr=lr)["id"] for lr in (1e-6, 2e-6, 3e-6)]
    for job_id, final in zip(ids, (3.0, 1.0, 2.0), strict=True):
        session.get(Job, job_id).sweep_id = sweep.id
        session.commit()
        finish(session, job_id, [9.0, final])
    page = html(client.get(f"/sweeps/{sweep.id}"))
    assert re.findall(r'<tr data-job-id="(\d+)"', page) == [str(ids[1]), str(ids[2])]
    assert "The best 2 of 3 jobs" in page


def test_pages_show_the_owner_of_jobs_and_sweeps(database_url: str, broker_url: str) -> None:
    entry = "alice:submit:sha256:" + digest("alice-secret").hex()
    app = make_test_app(database_url, broker_url, api_tokens=(entry,))
    try:
        client = app.test_client()
        headers = {"Authorization": "Bearer alice-secret"}
        sign_in(client, "alice-secret")
        job = client.post("/api/v1/jobs", json={"stage": "nn"}, headers=headers).get_json()
        sweep_body = {"name": "s", "base": {"stage": "nn"}, "grid": {"lr": [1e-6, 1e-5]}}
        sweep = client.post("/api/v1/sweeps", json=sweep_body, headers=headers).get_json()
        dashboard = html(client.get("/"))
        assert '<td data-field="owner" class="owner">alice</td>' in dashboard
        assert '<td class="owner">alice</td>' in dashboard
        assert '<dd data-field="owner">alice</dd>' in html(client.get(f"/jobs/{job['id']}"))
        assert '<span class="owner">alice</span>' in html(client.get(f"/sweeps/{sweep['id']}"))
    finally:
        app.extensions["trainq.engine"].dispose()


def test_sweep_page_draws_the_heatmap_rungs_and_pruned_curves(
    client: FlaskClient, session: so.Session
) -> None:
    # Given an ASHA sweep over optimizer x lr, lr levels whose text order is not their order.
    stored = {"name": "asha", "early_stop": {"rule": "asha", "grace": 4, "reduction": 2}}
    sweep = Sweep(name="asha", seed=3, request=stored, varied=["optimizer", "lr"], job_count=6)
    session.add(sweep)
    session.commit()
    finals = {
        ("sgd", 1e-5): 1e0,
        ("sgd", 1e-4): 1e-1,
        ("sgd", 1e-3): 1e-2,
        ("adam", 1e-4): 1e-3,
        ("adam", 1e-3): 1e1,
    }
    ids = {}
    for (optimizer, lr), final in finals.items():
        ids[(optimizer, lr)] = submit(client, optimizer=optimizer, lr=lr, stage="optim")["id"]
        session.get(Job, ids[(optimizer, lr)]).sweep_id = sweep.id
        session.commit()
        finish(session, ids[(optimizer, lr)], [20.0, final])
    pruned = submit(client, optimizer="adam", lr=1e-5, stage="optim")["id"]
    job = session.get(Job, pruned)
    job.sweep_id, job.status, job.pruned_at, job.steps_done = sweep.id, "pruned", 4, 5
    session.commit()
    page = html(client.get(f"/sweeps/{sweep.id}"))
    # The heatmap: lr columns by value (1e-05 < 0.0001 < 0.001), each cell's mean log10 loss
    # as its text and in its title; the pruned job's cell is empty (left out, as /factors).
    heat = page[page.index('<table class="heatmap">') :]
    heat = heat[: heat.index("</table>")]
    assert re.findall(r'<th scope="col" class="num">([^<]+)</th>', heat) == [
        "1e-05",
        "0.0001",
        "0.001",
    ]
    cells = re.findall(r'<td class="num heat heat-(\w+)" title="([^"]+)">([^<]+)</td>', heat)
    # Rows adam, sgd. Means -, -3, 1 (adam) and 0, -1, -2 (sgd): from -3 (bucket 0) to 1 (8),
    # so bucket = round((mean + 3) / 4 * 8).
    assert [(bucket, text) for bucket, _, text in cells] == [
        ("none", "-"),
        ("0", "-3.00"),
        ("8", "1.00"),
        ("6", "0.00"),
        ("4", "-1.00"),
        ("2", "-2.00"),
    ]
    assert cells[1][1] == "optimizer=adam, lr=0.0001: mean log10 loss -3.00 (loss 0.001), n=1"
    assert "the interaction explains" in page
    # The curves: the pruned job marked, the rungs of the stored rule for 20-step jobs.
    series = json.loads(re.search(r'id="sweep-series">(.*?)</script>', page, re.S).group(1))
    assert series["rungs"] == [4, 8, 16]
    assert {s["id"]: s["status"] for s in series["series"]}[pruned] == "pruned"
    assert "faded: pruned (1)" in page
    assert "rungs at steps 4, 8, 16" in page
    # The legend names the first factor's levels (the colours); the best-so-far curve is linked.
    legend = re.findall(
        r"<li data-color=\"[^\"]+\"><span class=\"swatch\"></span>([^<]+)</li>", page
    )
    assert legend == ["optimizer=adam", "optimizer=sgd"]
    # Linked on the pages' side, so a signed-in browser's navigation (cookie, no Bearer) opens it.
    assert f'href="/sweeps/{sweep.id}/best-so-far.svg"' in page
    figure = client.get(f"/sweeps/{sweep.id}/best-so-far.svg")
    assert figure.mimetype == "image/svg+xml"
    assert figure.status_code == 200
    assert b"</svg>" in figure.data
    assert f'href="/api/v1/sweeps/{sweep.id}/best-so-far"' in page
