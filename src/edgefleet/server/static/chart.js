/* edgefleet operator console: the throughput chart, plain inline SVG (no third-party code).
 *
 * One function, EdgefleetChart.throughput(view), turns GET /api/v1/queues/throughput into
 * an <svg>: per minute a bar of the jobs that finished, stacked by queue (each queue in its
 * own colour, its failed jobs on top of it in red), with a <title> on every segment as its
 * tooltip. Colours come from the stylesheet (.qc0 … .qc7), chosen from the queue's name so a
 * queue keeps its colour from one refresh to the next.
 */
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 960;
  const HEIGHT = 190;
  const PAD = { left: 34, right: 8, top: 10, bottom: 22 };
  const COLOURS = 8;

  function el(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  /** A queue's colour class, the same for the same name on every page. */
  function colourOf(queue) {
    let hash = 0;
    for (const c of String(queue)) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
    return `qc${hash % COLOURS}`;
  }

  /** 1, 2, 5, 10, 20, 50 … : the smallest such step that fits ``max`` in four steps. */
  function niceMax(max) {
    if (max <= 4) return 4;
    const raw = max / 4;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    return step * 4;
  }

  const pad2 = (n) => String(n).padStart(2, "0");
  const clock = (date) => `${pad2(date.getHours())}:${pad2(date.getMinutes())}`;

  function totals(view) {
    const n = view.minutes;
    const perMinute = new Array(n).fill(0);
    let all = 0;
    for (const q of view.queues) {
      for (let i = 0; i < n; i++) {
        const count = (q.success[i] || 0) + (q.failed[i] || 0);
        perMinute[i] += count;
        all += count;
      }
    }
    return { perMinute, all };
  }

  function axes(view, top, plotW, plotH) {
    const start = Date.parse(view.start);
    const nodes = [];
    for (const fraction of [0, 0.5, 1]) {
      const y = PAD.top + plotH * (1 - fraction);
      nodes.push(el("line", { class: "grid-line", x1: PAD.left, x2: PAD.left + plotW, y1: y, y2: y }));
      nodes.push(el("text", { class: "axis", x: PAD.left - 5, y: y + 3.5, "text-anchor": "end" }, String(top * fraction)));
    }
    const barW = plotW / view.minutes;
    for (let i = 0; i < view.minutes; i++) {
      const at = new Date(start + i * 60_000);
      const last = i === view.minutes - 1;
      if (!last && (at.getMinutes() % 15 !== 0 || i > view.minutes - 5)) continue;
      const x = PAD.left + (i + 0.5) * barW;
      nodes.push(el("text", { class: "axis", x, y: HEIGHT - 6, "text-anchor": last ? "end" : "middle" }, last ? "now" : clock(at)));
    }
    return nodes;
  }

  function bars(view, top, plotW, plotH) {
    const start = Date.parse(view.start);
    const barW = plotW / view.minutes;
    const scale = plotH / top;
    const nodes = [];
    for (let i = 0; i < view.minutes; i++) {
      let y = PAD.top + plotH;
      const x = PAD.left + i * barW + 0.5;
      const when = clock(new Date(start + i * 60_000));
      for (const q of view.queues) {
        const ok = q.success[i] || 0;
        const failed = q.failed[i] || 0;
        for (const [count, kind] of [[ok, "ok"], [failed, "failed"]]) {
          if (!count) continue;
          const h = count * scale;
          y -= h;
          nodes.push(el("rect", {
            class: `bar ${kind} ${colourOf(q.queue)}`, x, y, width: Math.max(1, barW - 1), height: h,
            "data-queue": q.queue, "data-minute": i,
          }, el("title", {}, `${when} · ${q.queue}: ${count} ${kind === "ok" ? "succeeded" : "failed"}`)));
        }
      }
    }
    return nodes;
  }

  /** The chart of a throughput view; ``data-total`` on the <svg> counts the jobs it shows. */
  function throughput(view) {
    const plotW = WIDTH - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const { perMinute, all } = totals(view);
    const top = niceMax(Math.max(0, ...perMinute));
    return el("svg", {
      class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "data-total": all,
      "aria-label": `Jobs finished per minute over the last ${view.minutes} minutes: ${all} in all`,
    }, axes(view, top, plotW, plotH), bars(view, top, plotW, plotH));
  }

  window.EdgefleetChart = { throughput, colourOf };
})();
