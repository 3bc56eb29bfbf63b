// A small loss-curve chart: inline SVG, linear step axis, log10 loss axis, hover readout.
// Every string reaches the page through textContent or setAttribute, never as markup.
"use strict";

const trainqChart = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 860;
  const HEIGHT = 380;
  const MARGIN = { left: 72, right: 18, top: 14, bottom: 48 };

  function el(name, attrs = {}, parent = null) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (parent) parent.appendChild(node);
    return node;
  }

  function decadeLabel(text, k) {
    text.textContent = "10";
    el("tspan", { dy: -7, "font-size": "0.72em" }, text).textContent = String(k);
    return text;
  }

  // A round step (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`.
  function niceStep(span, count) {
    const raw = span / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = raw / power;
    return power * (unit < 1.5 ? 1 : unit < 3.5 ? 2 : unit < 7.5 ? 5 : 10);
  }

  function domain(series) {
    let sMin = Infinity, sMax = -Infinity, lMin = Infinity, lMax = -Infinity;
    for (const s of series) {
      s.steps.forEach((step, i) => {
        const loss = s.losses[i];
        sMin = Math.min(sMin, step);
        sMax = Math.max(sMax, step);
        if (loss > 0 && Number.isFinite(loss)) {
          lMin = Math.min(lMin, loss);
          lMax = Math.max(lMax, loss);
        }
      });
    }
    if (!Number.isFinite(sMin)) return null;
    if (sMax === sMin) sMax = sMin + 1;
    if (!Number.isFinite(lMin)) {
      lMin = 0.1;
      lMax = 10;
    }
    let lo = Math.floor(Math.log10(lMin));
    let hi = Math.ceil(Math.log10(lMax));
    if (hi === lo) hi = lo + 1;
    return { sMin, sMax, lo, hi };
  }

  function scales(d) {
    const plotW = WIDTH - MARGIN.left - MARGIN.right;
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    return {
      x: (step) => MARGIN.left + ((step - d.sMin) / (d.sMax - d.sMin)) * plotW,
      y: (loss) => MARGIN.top + ((d.hi - Math.log10(loss)) / (d.hi - d.lo)) * plotH,
      step: (px) => d.sMin + ((px - MARGIN.left) / plotW) * (d.sMax - d.sMin),
    };
  }

  function drawAxes(svg, d, sc) {
    const left = MARGIN.left, right = WIDTH - MARGIN.right;
    const top = MARGIN.top, bottom = HEIGHT - MARGIN.bottom;
    const grid = el("g", { class: "grid" }, svg);
    const yAxis = el("g", { class: "y-axis" }, svg);
    const every = Math.max(1, Math.ceil((d.hi - d.lo) / 8));
    for (let k = d.lo; k <= d.hi; k += 1) {
      if (d.hi - d.lo <= 6 && k < d.hi) {
        for (let m = 2; m <= 9; m += 1) {
          const y = sc.y(m * Math.pow(10, k)).toFixed(1);
          el("line", { x1: left, x2: right, y1: y, y2: y, class: "minor" }, grid);
        }
      }
      if ((k - d.lo) % every !== 0) continue;
      const y = sc.y(Math.pow(10, k)).toFixed(1);
      el("line", { x1: left, x2: right, y1: y, y2: y, class: "major" }, grid);
      const tick = el("g", { class: "y-tick", "data-exponent": k }, yAxis);
      el("line", { x1: left - 5, x2: left, y1: y, y2: y }, tick);
      decadeLabel(el("text", { x: left - 8, y: Number(y) + 4, "text-anchor": "end" }, tick), k);
    }
    const xAxis = el("g", { class: "x-axis" }, svg);
    const step = niceStep(d.sMax - d.sMin, 6);
    for (let s = Math.ceil(d.sMin / step) * step; s <= d.sMax + 1e-9; s += step) {
      const x = sc.x(s).toFixed(1);
      el("line", { x1: x, x2: x, y1: top, y2: bottom, class: "major" }, grid);
      const tick = el("g", { class: "x-tick", "data-step": s }, xAxis);
      el("line", { x1: x, x2: x, y1: bottom, y2: bottom + 5 }, tick);
      el("text", { x, y: bottom + 19, "text-anchor": "middle" }, tick).textContent =
        Number(s.toPrecision(12)).toLocaleString("en-US");
    }
    el("rect", { x: left, y: top, width: right - left, height: bottom - top, class: "frame" }, svg);
    el("text", { x: (left + right) / 2, y: HEIGHT - 8, "text-anchor": "middle", class: "axis-title" }, svg)
      .textContent = "step";
    el("text", {
      x: 16, y: (top + bottom) / 2, "text-anchor": "middle", class: "axis-title",
      transform: `rotate(-90 16 ${(top + bottom) / 2})`,
    }, svg).textContent = "loss (log scale)";
  }

  // "M x y L x y ..." over the positive, finite losses; a gap starts a new M.
  function pathData(s, sc) {
    const parts = [];
    let pen = "M";
    s.steps.forEach((step, i) => {
      const loss = s.losses[i];
      if (!(loss > 0 && Number.isFinite(loss))) {
        pen = "M";
        return;
      }
      parts.push(`${pen}${sc.x(step).toFixed(1)} ${sc.y(loss).toFixed(1)}`);
      pen = "L";
    });
    return parts.join(" ");
  }

  // Index of the sample nearest to `step` in ascending `steps`.
  function nearest(steps, step) {
    let lo = 0, hi = steps.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (steps[mid] <= step) lo = mid; else hi = mid;
    }
    return Math.abs(steps[hi] - step) < Math.abs(steps[lo] - step) ? hi : lo;
  }

  function hover(svg, series, sc, readout) {
    const guide = el("g", { class: "hover", visibility: "hidden" }, svg);
    const line = el("line", { y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom }, guide);
    const dots = series.map((s) => el("circle", { r: 3.5, fill: s.color }, guide));
    const area = el("rect", {
      x: MARGIN.left, y: MARGIN.top, class: "hover-area",
      width: WIDTH - MARGIN.left - MARGIN.right, height: HEIGHT - MARGIN.top - MARGIN.bottom,
    }, svg);
    if (readout && !readout.dataset.hint) readout.dataset.hint = readout.textContent;
    area.addEventListener("mousemove", (event) => {
      const point = new DOMPoint(event.clientX, event.clientY)
        .matrixTransform(svg.getScreenCTM().inverse());
      const step = sc.step(point.x);
      line.setAttribute("x1", point.x.toFixed(1));
      line.setAttribute("x2", point.x.toFixed(1));
      guide.setAttribute("visibility", "visible");
      const rows = [];
      series.forEach((s, n) => {
        if (!s.steps.length) return;
        const i = nearest(s.steps, step);
        const loss = s.losses[i];
        const shown = loss > 0 && Number.isFinite(loss);
        dots[n].setAttribute("visibility", shown ? "visible" : "hidden");
        if (shown) {
          dots[n].setAttribute("cx", sc.x(s.steps[i]).toFixed(1));
          dots[n].setAttribute("cy", sc.y(loss).toFixed(1));
        }
        rows.push([s, s.steps[i], loss]);
      });
      if (!readout) return;
      readout.replaceChildren();
      for (const [s, at, loss] of rows) {
        const row = document.createElement("span");
        row.className = "readout-row";
        row.style.color = s.color;
        const name = series.length > 1 ? `${s.label}: ` : "";
        row.textContent = `${name}step ${at} · loss ${trainq.formatLoss(loss)}`;
        readout.appendChild(row);
      }
    });
    area.addEventListener("mouseleave", () => {
      guide.setAttribute("visibility", "hidden");
      if (readout) readout.textContent = readout.dataset.hint;
    });
  }

  // Draws (or redraws) `series` = [{label, color, steps, losses}] into `container`.
  function draw(container, series, options = {}) {
    const svg = el("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "loss-chart", role: "img",
      "aria-label": options.title || "loss curves",
    });
    const d = domain(series);
    if (d === null) {
      el("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "no-data" }, svg)
        .textContent = options.empty || "No losses recorded yet.";
      container.replaceChildren(svg);
      return;
    }
    const sc = scales(d);
    drawAxes(svg, d, sc);
    // `marks` = [{step, label}]: vertical dotted lines (a sweep's early-stopping rungs).
    const marks = el("g", { class: "marks" }, svg);
    for (const mark of options.marks || []) {
      if (mark.step < d.sMin || mark.step > d.sMax) continue;
      const x = sc.x(mark.step).toFixed(1);
      const line = el("line", {
        x1: x, x2: x, y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom, class: "rung", "data-step": mark.step,
      }, marks);
      el("title", {}, line).textContent = mark.label;
    }
    const curves = el("g", { class: "curves" }, svg);
    for (const s of series) {
      // A faded series (a pruned job) is drawn light, under the eye but out of the way.
      const faded = s.faded ? { "stroke-opacity": 0.25 } : {};
      el("path", {
        ...faded, d: pathData(s, sc), stroke: s.color, fill: "none",
        class: s.faded ? "curve pruned" : "curve",
        "data-points": s.steps.length,
        "data-last-step": s.steps.length ? s.steps[s.steps.length - 1] : -1,
      }, curves);
    }
    hover(svg, series, sc, options.readout || null);
    container.replaceChildren(svg);
  }

  // `element` builds one SVG node; `decadeLabel` writes 10 to the power k: shared with the
  // factor panels.
  return { draw, element: el, decadeLabel };
})();
