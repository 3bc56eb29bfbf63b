// The compare page: overlays the chosen jobs' curves, refreshing while any of them runs.
"use strict";

(() => {
  const data = document.getElementById("series");
  if (!data) return;
  const series = JSON.parse(data.textContent);
  const chart = document.getElementById("chart");
  const readout = document.getElementById("readout");
  const TERMINAL = new Set(["succeeded", "diverged", "failed", "cancelled", "pruned"]);

  for (const item of document.querySelectorAll("#legend li[data-color]")) {
    item.querySelector(".swatch").style.backgroundColor = item.dataset.color;
  }

  const STATUS = /^[a-z]+$/;

  // The summary row of a job that was still running when last seen.
  async function refreshRow(s) {
    const job = await trainq.fetchJson(`/api/v1/jobs/${Number(s.id)}`);
    const row = document.querySelector(`#summary tr[data-job-id="${Number(s.id)}"]`);
    const badge = row.querySelector('[data-field="status"]');
    if (STATUS.test(job.status)) {
      badge.textContent = job.status;
      badge.className = "badge badge-" + job.status;
    }
    row.querySelector('[data-field="steps_done"]').textContent = String(job.steps_done);
    row.querySelector('[data-field="final_loss"]').textContent = trainq.formatLoss(job.final_loss);
    row.querySelector('[data-field="min_loss"]').textContent = trainq.formatLoss(job.min_loss);
    row.querySelector('[data-field="min_loss_step"]').textContent = job.min_loss_step ?? "-";
    s.status = job.status;
  }

  async function refresh() {
    await Promise.all(series.filter((s) => !TERMINAL.has(s.status)).map(refreshRow));
    const histories = await Promise.all(
      series.map((s) => trainq.fetchJson(`/api/v1/jobs/${Number(s.id)}/losses?points=500`)),
    );
    const curves = series.map((s, i) => ({
      label: `#${s.id} ${s.label}`,
      color: s.color,
      steps: histories[i].steps,
      losses: histories[i].losses,
    }));
    trainqChart.draw(chart, curves, { readout, title: "loss curves of the compared jobs" });
    // Each job's row was read before its losses: once it reads terminal, its curve is whole.
    return series.some((s) => !TERMINAL.has(s.status));
  }

  trainq.poll(refresh, 2000);
})();
