"""The pages in a real headless Chromium against the whole service: live status, curves, compare."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect
from werkzeug.serving import make_server

from service.models import Job, Sweep
from service.tokens import digest
from tests.conftest import Stack, make_test_app
from tests.web.conftest import serving

SMALL = {"stage": "tensors", "N": 16, "D_in": 32, "H": 16, "D_out": 4, "lr": 1e-4}
# Default dims and many steps: runs for many seconds unless cancelled.
LONG = {"stage": "tensors", "iterations": 50_000}
TERMINAL = {"succeeded", "diverged", "failed", "cancelled", "pruned"}


def sig4(value: float) -> str:
    """A loss as the pages write it (Python's %.4g, exponent without leading zeros)."""
    return f"{value:.4g}".replace("e+0", "e+").replace("e-0", "e-")


def cancel_and_wait(stack: Stack, job_ids: list[int]) -> None:
    for job_id in job_ids:
        stack.client.post(f"/api/v1/jobs/{job_id}/cancel")
    for job_id in job_ids:
        assert stack.wait(job_id, timeout=60)["status"] == "cancelled"


def curve_points(path_d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML](-?[\d.]+) (-?[\d.]+)", path_d)]


def test_dashboard_status_goes_live_to_succeeded_without_reload(
    stack: Stack, live_url: str, page: Page, tmp_path: Path
) -> None:
    # Given two long jobs filling the worker's two processes, a third job waits, queued.
    blockers = [stack.submit(**LONG)["id"] for _ in range(2)]
    for job_id in blockers:
        stack.wait(job_id, until=lambda job: job["status"] == "running")
    waiting = stack.submit(**SMALL, iterations=300, name="<b>waits</b>")["id"]
    page.goto(live_url + "/")
    page.evaluate("window.stillTheSamePage = true")
    row = page.locator(f'#jobs tr[data-job-id="{waiting}"]')
    expect(row.locator('[data-field="status"]')).to_have_text("queued")
    expect(row.locator('[data-field="name"]')).to_have_text("<b>waits</b>")
    # Record every status the row shows from now on.
    page.evaluate(
        """id => {
          window.seen = [];
          const badge = document.querySelector(`tr[data-job-id="${id}"] [data-field=status]`);
          new MutationObserver(() => window.seen.push(badge.textContent))
            .observe(badge, {childList: true, characterData: true, subtree: true});
        }""",
        waiting,
    )
    # When a job is submitted after the page loaded, its row appears by itself.
    late = stack.submit(**SMALL, iterations=200)["id"]
    late_row = page.locator(f'#jobs tr[data-job-id="{late}"]')
    expect(late_row.locator('[data-field="status"]')).to_have_text(re.compile("queued|running"))
    expect(page.locator("#jobs tbody tr").first).to_have_attribute("data-job-id", str(late))
    # And when the blockers are cancelled, both jobs run and the page shows them succeed.
    cancel_and_wait(stack, blockers)
    expect(row.locator('[data-field="status"]')).to_have_text("succeeded", timeout=90_000)
    expect(late_row.locator('[data-field="status"]')).to_have_text("succeeded", timeout=90_000)
    expect(row.locator('[data-field="steps"]')).to_have_text("300/300")
    expect(row.locator('[data-field="progress"]')).to_have_attribute("value", "300")
    final = stack.wait(waiting)["final_loss"]
    expect(row.locator('[data-field="final_loss"]')).to_have_text(sig4(final))
    expect(page.locator(f'#jobs tr[data-job-id="{blockers[0]}"] .badge')).to_have_text("cancelled")
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.evaluate("window.seen")[-1] == "succeeded"
    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    print(f"screenshot: {tmp_path / 'dashboard.png'}")


def test_job_page_draws_the_curve_on_a_log_axis(
    stack: Stack, live_url: str, page: Page, tmp_path: Path
) -> None:
    job = stack.wait(stack.submit(**SMALL, iterations=400, seed=3)["id"])
    assert job["status"] == "succeeded"
    history = stack.losses(job["id"])
    page.goto(f"{live_url}/jobs/{job['id']}")
    curve = page.locator("svg.loss-chart path.curve")
    expect(curve).to_have_count(1)
    expect(curve).to_have_attribute("data-points", "400")
    points = curve_points(curve.get_attribute("d") or "")
    assert len(points) == 400
    # The y axis is log10: decade ticks equally spaced; the curve's points sit where the
    # decades put their losses.
    ticks = page.locator("svg.loss-chart .y-tick")
    exponents = [int(e) for e in ticks.evaluate_all("ts => ts.map(t => t.dataset.exponent)")]
    assert len(exponents) >= 2
    assert exponents == list(range(exponents[0], exponents[-1] + 1))
    ys = [
        float(y)
        for y in ticks.evaluate_all("ts => ts.map(t => t.querySelector('line').getAttribute('y1'))")
    ]
    gaps = [b - a for a, b in pairwise(ys)]
    assert all(abs(g - gaps[0]) < 0.2 for g in gaps)
    assert gaps[0] < 0
    per_decade = -gaps[0]
    for i in (0, 150, 399):
        expected = ys[0] - (math.log10(history["losses"][i]) - exponents[0]) * per_decade
        assert abs(points[i][1] - expected) < 0.3, i
    assert points[0][0] < points[-1][0]
    expect(page.locator("svg.loss-chart .y-tick text").first).to_contain_text("10")
    expect(page.locator('dd[data-field="status"]')).to_have_text("succeeded")
    expect(page.locator("#cancel")).to_be_hidden()
    # Hovering reads out a real step and its loss.
    box = page.locator("svg.loss-chart .hover-area").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    readout = page.locator("#readout .readout-row")
    expect(readout).to_have_count(1)
    match = re.fullmatch(r"step (\d+) · loss (\S+)", readout.text_content() or "")
    assert match is not None, readout.text_content()
    step = int(match.group(1))
    assert 150 <= step <= 250
    assert match.group(2) == sig4(history["losses"][step])
    page.screenshot(path=tmp_path / "job.png", full_page=True)
    print(f"screenshot: {tmp_path / 'job.png'}")


def test_job_page_updates_while_running_and_cancels(
    stack: Stack, live_url: str, page: Page
) -> None:
    job_id = stack.submit(**LONG)["id"]
    stack.wait(job_id, until=lambda job: job["steps_done"] > 0)
    page.goto(f"{live_url}/jobs/{job_id}")
    curve = page.locator("svg.loss-chart path.curve")
    expect(curve).to_have_count(1)
    first = int(curve.get_attribute("data-last-step") or 0)
    # The curve grows without a reload while the job trains (downsampled to at most 500
    # points, so its last step is what must grow).
    page.wait_for_function(
        "n => Number(document.querySelector('path.curve').dataset.lastStep) > n", arg=first
    )
    expect(page.locator(".section-head .badge")).to_have_text("running")
    # Cancelling asks first: answered no, nothing is sent and the job trains on.
    with page.expect_event("dialog") as asked:
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.locator("#cancel").click()
    assert asked.value.type == "confirm"
    assert f"Cancel job #{job_id}?" in asked.value.message
    expect(page.locator("#cancel")).to_be_enabled()
    expect(page.locator(".section-head .badge")).to_have_text("running")
    assert stack.client.get(f"/api/v1/jobs/{job_id}").get_json()["cancel_requested"] is False
    # Answered yes, the job is cancelled.
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel").click()
    expect(page.locator(".section-head .badge")).to_have_text("cancelled", timeout=60_000)
    expect(page.locator("#cancel")).to_be_hidden()
    assert stack.wait(job_id, timeout=60)["status"] == "cancelled"


def test_compare_picks_two_jobs_and_overlays_them(
    stack: Stack, live_url: str, page: Page, tmp_path: Path
) -> None:
    ids = [
        stack.submit(**{**SMALL, "lr": lr}, iterations=300, seed=11)["id"] for lr in (1e-4, 2e-4)
    ]
    for job_id in ids:
        assert stack.wait(job_id)["status"] == "succeeded"
    page.goto(live_url + "/")
    for job_id in ids:
        page.locator(f'#jobs tr[data-job-id="{job_id}"] input[name="jobs"]').check()
    page.get_by_role("button", name="Compare picked jobs").click()
    page.wait_for_url(re.compile(r"/compare\?"))
    curves = page.locator("svg.loss-chart path.curve")
    expect(curves).to_have_count(2)
    strokes = curves.evaluate_all("ps => ps.map(p => p.getAttribute('stroke'))")
    assert len(set(strokes)) == 2
    for n in range(2):
        assert len(curve_points(curves.nth(n).get_attribute("d") or "")) == 300
    expect(page.locator("#legend .label")).to_have_count(2)
    legend = page.locator("#legend li").evaluate_all(
        "ls => ls.map(l => [Number(l.dataset.jobId), l.querySelector('.label').textContent])"
    )
    assert dict(legend) == {ids[0]: "lr=0.0001", ids[1]: "lr=0.0002"}
    swatches = page.locator("#legend .swatch").evaluate_all(
        "ss => ss.map(s => getComputedStyle(s).backgroundColor)"
    )
    assert len(set(swatches)) == 2
    box = page.locator("svg.loss-chart .hover-area").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.5)
    expect(page.locator("#readout .readout-row")).to_have_count(2)
    expect(page.locator("#readout .readout-row").last).to_contain_text(f"#{ids[0]} lr=0.0001")
    page.screenshot(path=tmp_path / "compare.png", full_page=True)
    print(f"screenshot: {tmp_path / 'compare.png'}")


def test_compare_page_follows_a_running_job(stack: Stack, live_url: str, page: Page) -> None:
    done = stack.wait(stack.submit(**SMALL, iterations=100, seed=4)["id"])
    running = stack.submit(**LONG)["id"]
    stack.wait(running, until=lambda job: job["steps_done"] > 0)
    page.goto(f"{live_url}/compare?jobs={done['id']},{running}")
    curve = page.locator("svg.loss-chart path.curve").nth(1)
    expect(curve).to_have_attribute("data-points", re.compile(r"[1-9]"))
    # The curve is downsampled to at most 500 points: its last step is what must grow.
    first = int(curve.get_attribute("data-last-step") or 0)
    page.wait_for_function(
        "n => Number(document.querySelectorAll('path.curve')[1].dataset.lastStep) > n", arg=first
    )
    cancel_and_wait(stack, [running])
    row = page.locator(f'#summary tr[data-job-id="{running}"]')
    expect(row.locator('[data-field="status"]')).to_have_text("cancelled", timeout=30_000)
    ended = stack.client.get(f"/api/v1/jobs/{running}").get_json()
    expect(row.locator('[data-field="steps_done"]')).to_have_text(str(ended["steps_done"]))
    expect(row.locator('[data-field="final_loss"]')).to_have_text(sig4(ended["final_loss"]))


def test_unknown_job_page_is_an_html_404(live_url: str, browser: Browser) -> None:
    # Its own tab: the browser rightly logs the 404, which the `page` fixture counts as a fault.
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(f"{live_url}/jobs/987654")
        assert response is not None
        assert response.status == 404
        expect(page.locator("h1")).to_have_text(re.compile("404"))
        expect(page.locator("main")).to_contain_text("There is no job 987654")
    finally:
        context.close()


def test_sweep_progress_leaderboard_and_factors(
    stack: Stack, live_url: str, page: Page, tmp_path: Path
) -> None:
    # Given a sweep row whose two jobs do not exist yet, the dashboard shows it at 0/2.
    with stack.sessions() as session:
        sweep = Sweep(name="lr <grid>", seed=1, request={}, varied=["lr"], job_count=2)
        session.add(sweep)
        session.commit()
        sweep_id = sweep.id
    page.goto(live_url + "/")
    row = page.locator(f'#sweeps tr[data-sweep-id="{sweep_id}"]')
    expect(row.locator('[data-field="finished"]')).to_have_text("0/2")
    expect(row.locator(".name")).to_have_text("lr <grid>")
    # When its jobs run to the end, the row counts them without a reload.
    ids = [stack.submit(**{**SMALL, "lr": lr}, iterations=200, seed=2)["id"] for lr in (1e-4, 3e-4)]
    with stack.sessions() as session:
        session.execute(sa.update(Job).where(Job.id.in_(ids)).values(sweep_id=sweep_id))
        session.commit()
    finals = {job_id: stack.wait(job_id)["final_loss"] for job_id in ids}
    expect(row.locator('[data-field="finished"]')).to_have_text("2/2", timeout=30_000)
    # The sweep page ranks them by final loss and links the best to the compare page.
    row.get_by_role("link").click()
    ranked = page.locator("#jobs tbody tr").evaluate_all(
        "rs => rs.map(r => Number(r.dataset.jobId))"
    )
    assert ranked == sorted(ids, key=finals.__getitem__)
    # The factor panel shows lr's two levels, each at its job's final loss.
    panel = page.locator('svg.factor-chart[data-factor="lr"]')
    expect(panel.locator("g.level")).to_have_count(2)
    expect(page.locator("#factors figcaption")).to_contain_text("final loss by lr")
    best = min(finals.values())
    expect(page.locator("#factor-summary")).to_contain_text(f"(loss {sig4(best)})")
    page.screenshot(path=tmp_path / "sweep.png", full_page=True)
    print(f"screenshot: {tmp_path / 'sweep.png'}")
    page.get_by_role("link", name="Compare the best 10").click()
    expect(page.locator("svg.loss-chart path.curve")).to_have_count(2)


def test_sweep_page_draws_the_heatmap_and_fades_pruned_curves(
    stack: Stack, live_url: str, page: Page, tmp_path: Path
) -> None:
    # Given an ASHA sweep of optimizer x lr whose four jobs ran, one of them then marked pruned.
    early_stop = {"rule": "asha", "grace": 4, "reduction": 2}
    with stack.sessions() as session:
        sweep = Sweep(
            name="heat",
            seed=1,
            request={"early_stop": early_stop},
            varied=["optimizer", "lr"],
            job_count=4,
        )
        session.add(sweep)
        session.commit()
        sweep_id = sweep.id
    optim = {**SMALL, "stage": "optim", "iterations": 40, "seed": 2}
    ids = [
        stack.submit(**{**optim, "optimizer": optimizer, "lr": lr})["id"]
        for optimizer in ("sgd", "adam")
        for lr in (1e-4, 1e-5)
    ]
    for job_id in ids:
        assert stack.wait(job_id)["status"] == "succeeded"
    with stack.sessions() as session:
        session.execute(sa.update(Job).where(Job.id.in_(ids)).values(sweep_id=sweep_id))
        session.execute(sa.update(Job).where(Job.id == ids[0]).values(status="pruned", pruned_at=4))
        session.commit()
    page.goto(f"{live_url}/sweeps/{sweep_id}")
    # The heatmap: three finished cells, each with its value as text and in its title; the
    # pruned job's cell empty.
    cells = page.locator("table.heatmap td.heat")
    expect(cells).to_have_count(4)
    titles = cells.evaluate_all("cs => cs.map(c => c.getAttribute('title'))")
    assert sum("mean log10 loss" in t for t in titles) == 3
    assert sum("no finished job" in t for t in titles) == 1
    # lr columns by value: 1e-05 before 0.0001 (as text they would sort the other way).
    expect(page.locator("table.heatmap th[scope=col]").nth(1)).to_have_text("1e-05")
    # The curves: four, the pruned one faded; the rungs at 4, 8, 16 and 32 dotted.
    expect(page.locator("svg.loss-chart path.curve")).to_have_count(4)
    faded = page.locator("svg.loss-chart path.curve.pruned")
    expect(faded).to_have_count(1)
    expect(faded).to_have_attribute("stroke-opacity", "0.25")
    rungs = page.locator("svg.loss-chart line.rung")
    expect(rungs).to_have_count(4)
    assert rungs.evaluate_all("ls => ls.map(l => Number(l.dataset.step))") == [4, 8, 16, 32]
    page.screenshot(path=tmp_path / "sweep-heatmap.png", full_page=True)
    print(f"screenshot: {tmp_path / 'sweep-heatmap.png'}")


def test_sweep_page_marks_what_diverged_instead_of_a_number(
    stack: Stack, live_url: str, page: Page
) -> None:
    # Given an optimizer x lr sweep whose sgd runs diverge on purpose (lr 0.1 at these dims).
    with stack.sessions() as session:
        sweep = Sweep(name="div", seed=1, request={}, varied=["optimizer", "lr"], job_count=4)
        session.add(sweep)
        session.commit()
        sweep_id = sweep.id
    optim = {**SMALL, "stage": "optim", "iterations": 40, "seed": 2, "N": 16, "D_in": 32}
    ids = {
        (optimizer, lr): stack.submit(**{**optim, "optimizer": optimizer, "lr": lr})["id"]
        for optimizer in ("sgd", "adam")
        for lr in (1e-1, 3e-2)
    }
    for (optimizer, _), job_id in ids.items():
        want = "diverged" if optimizer == "sgd" else "succeeded"
        assert stack.wait(job_id)["status"] == want
    with stack.sessions() as session:
        session.execute(sa.update(Job).where(Job.id.in_(ids.values())).values(sweep_id=sweep_id))
        session.commit()
    page.goto(f"{live_url}/sweeps/{sweep_id}")
    # The sgd level's panel is a mark saying "diverged", not a dot at a made-up loss.
    panel = page.locator('svg.factor-chart[data-factor="optimizer"]')
    expect(panel.locator("g.level")).to_have_count(2)
    marked = panel.locator("g.level.diverged")
    expect(marked).to_have_count(1)
    expect(marked.locator("text.diverged-label")).to_have_text("diverged")
    expect(marked.locator("circle")).to_have_count(0)
    expect(marked.locator("title")).to_have_text("optimizer=sgd: all 2 run(s) diverged")
    expect(page.locator("#factor-summary")).to_contain_text(
        "2 diverged, ranked below every run that did not"
    )
    # The heatmap's sgd cells and the leaderboard's diverged rows say so too.
    expect(page.locator("table.heatmap td.heat-diverged")).to_have_text(["diverged"] * 2)
    for lr in (1e-1, 3e-2):
        row = page.locator(f'#jobs tr[data-job-id="{ids[("sgd", lr)]}"]')
        expect(row.locator('[data-field="final_loss"]')).to_have_text("diverged")


def test_signing_in_opens_the_pages_and_lets_them_poll_a_guarded_api(
    stack: Stack, browser: Browser
) -> None:
    entry = "alice:read:sha256:" + digest("alice-secret").hex()
    app = make_test_app(stack.database_url, stack.broker_url, api_tokens=(entry,))
    # Its own tab: the refused sign-in's 401 is logged by the browser, rightly.
    context = browser.new_context()
    try:
        with serving(app) as url:
            job_id = stack.submit(**SMALL, iterations=50, name="private")["id"]
            page = context.new_page()
            # Given a page opened without signing in: the sign-in form, not the job.
            page.goto(f"{url}/jobs/{job_id}")
            expect(page).to_have_url(re.compile(rf"/sign-in\?next=/jobs/{job_id}$"))
            expect(page.locator("body")).not_to_contain_text("private")
            page.locator("#sign-in-token").fill("wrong")
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#sign-in-problem")).to_contain_text("not a token")
            # When the right token is given, the asked-for page opens and its script polls the API.
            page.locator("#sign-in-token").fill("alice-secret")
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(f"{url}/jobs/{job_id}")
            expect(page.locator('[data-field="signed-in"]')).to_have_text("alice")
            expect(page.locator(".section-head .badge")).to_have_text("succeeded", timeout=60_000)
            expect(page.locator("svg.loss-chart path.curve")).to_have_count(1)
            expect(page.locator("#api-notice")).to_be_hidden()
            assert page.evaluate("localStorage.getItem('trainq.apiToken')") == "alice-secret"
            # The cookie is out of the scripts' reach and never sent by another site.
            (cookie,) = context.cookies()
            assert (cookie["name"], cookie["value"]) == ("trainq_token", "alice-secret")
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"
            assert cookie["path"] == "/"
            assert "trainq_token" not in page.evaluate("document.cookie")
            # Then signing out forgets both, and the pages ask again.
            page.get_by_role("button", name="Sign out").click()
            expect(page).to_have_url(re.compile(r"/sign-in$"))
            assert context.cookies() == []
            assert page.evaluate("localStorage.getItem('trainq.apiToken')") is None
            page.goto(url + "/")
            expect(page).to_have_url(re.compile(r"/sign-in\?next=/$"))
    finally:
        context.close()
        app.extensions["trainq.engine"].dispose()


ATTACKER_PAGE = b"""<!doctype html>
<form id="attack" method="post" enctype="text/plain" action="{target}/api/v1/jobs">
<input name='{{"stage": "nn", "name": "forged", "pad": "' value='"}}'>
<button type="submit">win a prize</button>
</form>"""


def test_another_sites_form_cannot_submit_a_job_to_an_open_api(
    stack: Stack, live_url: str, browser: Browser
) -> None:
    # Given a page on another site (localhost is not the same site as 127.0.0.1) whose form
    # posts a JSON-looking text/plain body to the open API, as make run serves it.
    body = ATTACKER_PAGE.replace(b"{target}", live_url.encode())

    def attacker(_environ: dict, start_response: Callable) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [body]

    server = make_server("127.0.0.1", 0, attacker, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    context = browser.new_context()
    try:
        before = stack.client.get("/api/v1/jobs", query_string={"name": "forged"}).get_json()
        page = context.new_page()
        page.goto(f"http://localhost:{server.server_port}/")
        # When a visitor presses its button
        with page.expect_response(lambda r: r.url.endswith("/api/v1/jobs")) as answer:
            page.get_by_role("button", name="win a prize").click()
        # Then the API refuses it as cross-site and no job exists
        assert answer.value.status == 403
        assert answer.value.json()["error"]["code"] == "cross_site"
        after = stack.client.get("/api/v1/jobs", query_string={"name": "forged"}).get_json()
        assert after["jobs"] == before["jobs"] == []
    finally:
        context.close()
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def set_hidden(page: Page, hidden: bool) -> None:
    """Tell the page its tab was hidden or shown, as a browser does on switching tabs."""
    page.evaluate(
        """hidden => {
          Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
          document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def wait_for_count(page: Page, items: list[str], count: int, seconds: float) -> None:
    for _ in range(int(seconds * 10)):
        if len(items) >= count:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{len(items)} polls, expected {count}")


def test_dashboard_stops_polling_while_the_tab_is_hidden(live_url: str, page: Page) -> None:
    polls: list[str] = []
    landed: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/api/v1/jobs?" in r.url else None)
    for event in ("requestfinished", "requestfailed"):
        page.on(event, lambda r: landed.append(r.url) if "/api/v1/jobs?" in r.url else None)
    page.goto(live_url + "/")
    wait_for_count(page, polls, 2, 10)
    set_hidden(page, True)
    wait_for_count(page, landed, len(polls), 10)  # a poll already in flight lands first
    hidden_from = len(polls)
    page.wait_for_timeout(4000)  # more than two polling periods
    assert len(polls) == hidden_from
    set_hidden(page, False)
    wait_for_count(page, polls, hidden_from + 2, 10)
