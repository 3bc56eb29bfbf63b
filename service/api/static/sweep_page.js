// The sweep page's factor panels, from the sweeps API; refreshed until no job is left to finish.
"use strict";

(() => {
  const panel = document.getElementById("factors");
  if (!panel) return;
  const id = Number(panel.dataset.sweepId);
  const grid = document.getElementById("factor-panels");
  const summary = document.getElementById("factor-summary");

  function configText(config) {
    return Object.entries(config)
      .map(([k, v]) => `${k}=${typeof v === "number" ? trainq.formatLoss(v) : v}`)
      .join(", ");
  }

  function show(table) {
    const figures = [];
    for (const effect of table.main_effects) {
      const factor = table.factors[effect.factor];
      const figure = document.createElement("figure");
      figure.className = "factor";
      const caption = document.createElement("figcaption");
      const share = effect.share === null ? "" : ` · explains ${Math.round(effect.share * 100)}%`;
      caption.textContent = `final loss by ${effect.factor}${share}`;
      const box = document.createElement("div");
      figure.append(caption, box);
      trainqFactorChart.draw(box, effect.factor, factor);
      figures.push(figure);
    }
    grid.replaceChildren(...figures);
    const parts = [`${table.used} finished job(s) scored`];
    if (table.diverged) {
      parts.push(`${table.diverged} diverged, ranked below every run that did not`);
    }
    const pairs = (table.interactions || []).filter((pair) => pair.share !== null);
    if (pairs.length) {
      const shares = pairs.map((pair) => `${pair.name} ${Math.round(pair.share * 100)}%`);
      parts.push(`interactions explain: ${shares.join(", ")}`);
    }
    if (table.best_config) {
      const best = trainq.formatLoss(Math.pow(10, table.best_config.mean));
      parts.push(`best: ${configText(table.best_config.config)} (loss ${best})`);
    } else if (table.used) {
      parts.push("best: none, every configuration diverged");
    }
    summary.textContent = parts.join(" · ") + ".";
  }

  async function refresh() {
    const table = await trainq.fetchJson(`/api/v1/sweeps/${id}/factors`);
    show(table);
    const open = (table.excluded.queued || 0) + (table.excluded.running || 0);
    return open > 0;
  }

  trainq.poll(refresh, 3000);
})();
