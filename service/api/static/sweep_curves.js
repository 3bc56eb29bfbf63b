// The sweep page's curves: the leaderboard's jobs on one chart, pruned ones faded, the
// early-stopping rungs dotted; refreshed until every job has ended.
"use strict";

(() => {
  const data = document.getElementById("sweep-series");
  if (!data) return;
  const { series, rungs } = JSON.parse(data.textContent);
  const chart = document.getElementById("sweep-chart");
  const TERMINAL = new Set(["succeeded", "diverged", "failed", "cancelled", "pruned"]);
  const marks = rungs.map((step) => ({ step, label: `rung at step ${step}` }));

  for (const item of document.querySelectorAll("#sweep-legend li[data-color]")) {
    item.querySelector(".swatch").style.backgroundColor = item.dataset.color;
  }

  async function refresh() {
    if (!series.length) return false;
    const ids = series.map((s) => Number(s.id)).join(",");
    const body = await trainq.fetchJson(`/api/v1/compare?jobs=${ids}&points=200&pairs_limit=0`);
    const status = new Map(body.jobs.map((job) => [job.id, job.status]));
    const curves = series.map((s, i) => ({
      label: `#${s.id}`,
      color: s.color,
      steps: body.steps,
      losses: body.histories[i].losses,
      faded: status.get(s.id) === "pruned",
    }));
    trainqChart.draw(chart, curves, { title: "loss curves of the sweep's jobs", marks });
    return body.jobs.some((job) => !TERMINAL.has(job.status));
  }

  trainq.poll(refresh, 3000);
})();
