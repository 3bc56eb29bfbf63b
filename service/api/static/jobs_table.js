// Keeps a jobs table live: polls the jobs API, patches each row's status, progress and loss,
// and (on the dashboard) adds rows for new jobs, all without reloading the page.
"use strict";

(() => {
  const table = document.getElementById("jobs");
  if (!table) return;
  const body = table.tBodies[0];
  const template = document.getElementById("job-row");
  const insertNew = table.dataset.insertNew === "true";
  const source = new URL(table.dataset.source, window.location.href);
  const limit = Number(source.searchParams.get("limit")) || 50;
  const TERMINAL = new Set(["succeeded", "diverged", "failed", "cancelled", "pruned"]);
  const STATUS = /^[a-z]+$/;

  function cell(row, field) {
    return row.querySelector(`[data-field="${field}"]`);
  }

  function setText(row, field, text) {
    const node = cell(row, field);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function fill(row, job) {
    row.dataset.jobId = String(job.id);
    const link = cell(row, "link");
    if (link) {
      link.href = "/jobs/" + encodeURIComponent(job.id);
      link.textContent = "#" + job.id;
    }
    const pick = row.querySelector('input[name="jobs"]');
    if (pick) pick.value = String(job.id);
    const badge = cell(row, "status");
    if (badge && STATUS.test(job.status)) {
      badge.textContent = job.status;
      badge.className = "badge badge-" + job.status;
    }
    const bar = cell(row, "progress");
    // A leaderboard row has no iterations: the bar already holds them.
    const iterations = job.iterations ?? (bar ? bar.max : "?");
    if (bar) {
      bar.max = iterations;
      bar.value = job.steps_done;
    }
    setText(row, "steps", `${job.steps_done}/${iterations}`);
    // A diverged job's last finite loss is no outcome (as _jobs.html's final_loss says).
    const final = job.status === "diverged" ? "diverged" : trainq.formatLoss(job.final_loss);
    setText(row, "final_loss", final);
    setText(row, "min_loss", trainq.formatLoss(job.min_loss));
    if (!("stage" in job)) return; // a leaderboard row: the rest does not change
    setText(row, "name", job.name || "");
    setText(row, "owner", job.owner || "-");
    setText(row, "stage", job.stage);
    setText(row, "optimizer", job.optimizer);
    setText(row, "lr", trainq.formatLoss(job.lr));
    setText(row, "created_at", trainq.formatWhen(job.created_at));
  }

  async function refresh() {
    const page = await trainq.fetchJson(source.pathname + source.search);
    const jobs = page[table.dataset.list];
    // The API lists newest first; walking oldest first and prepending keeps that order.
    for (const job of jobs.slice().reverse()) {
      let row = body.querySelector(`tr[data-job-id="${Number(job.id)}"]`);
      if (!row && insertNew && template) {
        row = template.content.firstElementChild.cloneNode(true);
        body.prepend(row);
      }
      if (row) fill(row, job);
    }
    if (insertNew) {
      while (body.rows.length > limit) body.deleteRow(-1);
      const empty = document.getElementById("jobs-empty");
      if (empty) empty.hidden = body.rows.length > 0;
    }
    // A fixed set of rows (a sweep) needs no more polling once every job has ended.
    return insertNew || !jobs.every((job) => TERMINAL.has(job.status));
  }

  trainq.poll(refresh, 1500);
})();

// Sweep rows on the dashboard: follow each unfinished sweep's progress until it is done.
(() => {
  const rows = Array.from(document.querySelectorAll("#sweeps tr[data-sweep-id]"));
  const done = new Set();
  async function refresh() {
    for (const row of rows) {
      const id = Number(row.dataset.sweepId);
      if (done.has(id)) continue;
      const sweep = await trainq.fetchJson(`/api/v1/sweeps/${id}`);
      row.querySelector('[data-field="progress"]').value = sweep.finished;
      row.querySelector('[data-field="finished"]').textContent =
        `${sweep.finished}/${sweep.job_count}`;
      if (sweep.done) done.add(id);
    }
    return done.size < rows.length;
  }
  if (rows.length) trainq.poll(refresh, 2000);
})();
