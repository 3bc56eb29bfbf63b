// The job page: draws the loss curve and keeps it and the fields current while the job runs.
"use strict";

(() => {
  const page = document.getElementById("job");
  const chart = document.getElementById("chart");
  const readout = document.getElementById("readout");
  const cancel = document.getElementById("cancel");
  const id = Number(page.dataset.jobId);
  const TERMINAL = new Set(["succeeded", "diverged", "failed", "cancelled", "pruned"]);
  const STATUS = /^[a-z]+$/;

  function text(value) {
    if (value === null || value === undefined) return "-";
    if (value === true) return "yes";
    if (value === false) return "no";
    if (Array.isArray(value)) return value.join(", ") || "-";
    return String(value);
  }

  function showJob(job) {
    for (const node of page.querySelectorAll("dd[data-field]")) {
      const raw = job[node.dataset.field];
      // The server wrote numbers as Python does (1e-06, 2.0); keep them while they are equal.
      if (typeof raw === "number" && Number(node.textContent) === raw) continue;
      const value = text(raw);
      if (node.textContent !== value) node.textContent = value;
    }
    const badge = page.querySelector('.section-head [data-field="status"]');
    if (STATUS.test(job.status)) {
      badge.textContent = job.status;
      badge.className = "badge badge-" + job.status;
    }
    page.dataset.status = job.status;
    cancel.hidden = TERMINAL.has(job.status);
  }

  async function refresh() {
    const [job, history] = await Promise.all([
      trainq.fetchJson(`/api/v1/jobs/${id}`),
      trainq.fetchJson(`/api/v1/jobs/${id}/losses?points=500`),
    ]);
    showJob(job);
    trainqChart.draw(
      chart,
      [{ label: `job ${id}`, color: "#0072b2", steps: history.steps, losses: history.losses }],
      { readout, title: `loss curve of job ${id}` },
    );
    return !TERMINAL.has(job.status);
  }

  cancel.addEventListener("click", async () => {
    // A cancelled job cannot be resumed: ask first.
    const name = page.dataset.jobName ? ` (${page.dataset.jobName})` : "";
    if (!window.confirm(`Cancel job #${id}${name}? Its training stops and cannot be resumed.`)) return;
    cancel.disabled = true;
    try {
      showJob(await trainq.fetchJson(`/api/v1/jobs/${id}/cancel`, { method: "POST" }));
    } catch (error) {
      trainq.say("Cancel failed: " + error.message);
    } finally {
      cancel.disabled = false;
    }
  });

  trainq.poll(refresh, 1500);
})();
