// The compare page: overlays the chosen jobs' curves, refreshing while any of them runs.
"use strict";

(() => {
  const data = document.getElementById("series");
  if (!data) return;
  const series = JSON.parse(data.textContent);
  const chart = document.getElementById("chart");
  const readout = document.getElementById("readout");
  const TERMINAL = new Set(["succeeded", "diverged", "failed", "cancelled"]);

  for (const item of document.querySelectorAll("#legend li[data-color]")) {
    item.querySelector(".swatch").style.backgroundColor = item.dataset.color;
  }

  async function refresh() {
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
    return histories.some((h) => !TERMINAL.has(h.status));
  }

  trainq.poll(refresh, 2000);
})();
