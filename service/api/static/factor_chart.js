// One panel per sweep factor: each level's final loss (log scale) as mean with a min-max bar.
"use strict";

const trainqFactorChart = (() => {
  const el = trainqChart.element;
  const WIDTH = 420;
  const HEIGHT = 240;
  const MARGIN = { left: 52, right: 12, top: 12, bottom: 44 };
  const COLOR = "#0072b2";

  function levelText(value, level) {
    if (level && level.label) return level.label;  // a decade bin, "1e-4..1e-3"
    if (typeof value === "number") return trainq.formatLoss(value);
    if (value === null || value === undefined) return "-";
    return String(value);
  }

  // Draws `factor` = {levels: {key: {value, n, mean, min, max}}, share} into `container`.
  function draw(container, name, factor) {
    // `order` lists the levels numbers by value: the object's keys come back sorted as text.
    const levels = (factor.order || Object.keys(factor.levels)).map((key) => factor.levels[key]);
    const svg = el("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "factor-chart", role: "img",
      "aria-label": `final loss by ${name}`, "data-factor": name,
    });
    if (!levels.length) {
      container.replaceChildren(svg);
      return;
    }
    // The axis spans the levels with a run that did not diverge; the others sit on its top.
    const kept = levels.filter((l) => !l.all_diverged);
    const ranged = kept.length ? kept : levels;
    let lo = Math.floor(Math.min(...ranged.map((l) => l.min)));
    let hi = Math.ceil(Math.max(...ranged.map((l) => l.max)));
    if (hi === lo) hi = lo + 1;
    const left = MARGIN.left, right = WIDTH - MARGIN.right;
    const top = MARGIN.top, bottom = HEIGHT - MARGIN.bottom;
    const y = (outcome) => top + ((hi - outcome) / (hi - lo)) * (bottom - top);
    const slot = (right - left) / levels.length;
    const x = (i) => left + slot * (i + 0.5);
    const every = Math.max(1, Math.ceil((hi - lo) / 6));
    for (let k = lo; k <= hi; k += every) {
      el("line", { x1: left, x2: right, y1: y(k), y2: y(k), class: "gridline" }, svg);
      const text = el("text", { x: left - 6, y: y(k) + 4, "text-anchor": "end" }, svg);
      trainqChart.decadeLabel(text, k);
    }
    el("rect", { x: left, y: top, width: right - left, height: bottom - top, class: "frame" }, svg);
    const labelEvery = Math.max(1, Math.ceil(levels.length / 10));
    levels.forEach((level, i) => {
      const g = el("g", { class: "level", "data-n": level.n }, svg);
      const tip = el("title", {}, g);
      const where = `${name}=${levelText(level.value, level)}`;
      if (level.all_diverged) {
        // Every run diverged: no loss to show, a mark on the top edge that says so.
        g.classList.add("diverged");
        el("path", { d: `M${x(i) - 6} ${top} L${x(i) + 6} ${top} L${x(i)} ${top + 10} Z`, class: "diverged-mark" }, g);
        el("text", { x: x(i), y: top + 24, "text-anchor": "middle", class: "diverged-label" }, g)
          .textContent = "diverged";
        tip.textContent = `${where}: all ${level.n} run(s) diverged`;
      } else {
        el("line", { x1: x(i), x2: x(i), y1: y(level.max), y2: y(level.min), stroke: COLOR }, g);
        el("circle", { cx: x(i), cy: y(level.mean), r: 4.5, fill: COLOR }, g);
        const diverged = level.diverged ? `, ${level.diverged} diverged` : "";
        tip.textContent = `${where}: n=${level.n}${diverged}, mean loss ` +
          `${trainq.formatLoss(Math.pow(10, level.mean))}, best ${trainq.formatLoss(Math.pow(10, level.min))}`;
      }
      if (i % labelEvery === 0) {
        el("text", { x: x(i), y: bottom + 16, "text-anchor": "middle", class: "level-label" }, svg)
          .textContent = levelText(level.value, level);
      }
    });
    el("text", { x: (left + right) / 2, y: HEIGHT - 6, "text-anchor": "middle", class: "axis-title" }, svg)
      .textContent = name;
    container.replaceChildren(svg);
  }

  return { draw };
})();
