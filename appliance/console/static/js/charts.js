// Small hand-written SVG charts: detections over time (area/line) and horizontal bars (per rule).

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

function frame(width, height, label) {
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label });
  svg.append(s("title", {}, label));
  return svg;
}

function niceMax(v) {
  if (v <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(v));
  return Math.ceil(v / p) * p;
}

/**
 * Bucket timestamps into `buckets` equal slots between `start` and `end` (Date objects).
 * Returns [{t: Date, v: count}].
 */
export function bucketize(times, start, end, buckets) {
  const span = Math.max(1, end.getTime() - start.getTime());
  const out = Array.from({ length: buckets }, (_, i) => ({ t: new Date(start.getTime() + (span * i) / buckets), v: 0 }));
  for (const t of times) {
    if (!t) continue;
    const i = Math.floor(((t.getTime() - start.getTime()) / span) * buckets);
    if (i >= 0 && i < buckets) out[i].v += 1;
  }
  return out;
}

/** Line/area chart of counts over time; `points` = [{t: Date, v: number}]. */
export function timeChart(points, { label = "Detections over time", width = 640, height = 200 } = {}) {
  const m = { l: 40, r: 10, t: 10, b: 28 };
  const svg = frame(width, height, label);
  const w = width - m.l - m.r;
  const hgt = height - m.t - m.b;
  const max = niceMax(Math.max(0, ...points.map((p) => p.v)));
  const x = (i) => m.l + (points.length > 1 ? (w * i) / (points.length - 1) : w / 2);
  const y = (v) => m.t + hgt - (hgt * v) / max;
  for (let k = 0; k <= 4; k += 1) {
    const v = (max * k) / 4;
    svg.append(s("line", { class: "grid-line", x1: m.l, x2: width - m.r, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, Math.round(v)));
  }
  svg.append(s("line", { class: "axis", x1: m.l, x2: width - m.r, y1: y(0), y2: y(0) }));
  if (points.length) {
    const line = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
    const area = `${line} L${x(points.length - 1).toFixed(1)},${y(0)} L${x(0).toFixed(1)},${y(0)} Z`;
    svg.append(s("path", { class: "area", d: area }), s("path", { class: "line", d: line }));
    const ticks = Math.min(6, points.length);
    for (let k = 0; k < ticks; k += 1) {
      const i = Math.round(((points.length - 1) * k) / Math.max(1, ticks - 1));
      const t = points[i].t;
      const txt = `${String(t.getUTCHours()).padStart(2, "0")}:${String(t.getUTCMinutes()).padStart(2, "0")}`;
      const anchor = k === 0 ? "start" : k === ticks - 1 ? "end" : "middle";
      svg.append(s("text", { x: x(i), y: height - 8, "text-anchor": anchor }, txt));
    }
    points.forEach((p, i) => {
      if (!p.v) return;
      const dot = s("circle", { cx: x(i), cy: y(p.v), r: 2.5, class: "bar" });
      dot.append(s("title", {}, `${p.t.toISOString()}: ${p.v}`));
      svg.append(dot);
    });
  }
  return svg;
}

/** Horizontal bar chart; `items` = [{label, value, hot?}] (already sorted). */
export function barChart(items, { label = "Counts", width = 640, barHeight = 22 } = {}) {
  const m = { l: 200, r: 50, t: 6, b: 6 };
  const height = m.t + m.b + Math.max(1, items.length) * (barHeight + 6);
  const svg = frame(width, height, label);
  const max = Math.max(1, ...items.map((it) => it.value));
  const w = width - m.l - m.r;
  items.forEach((it, i) => {
    const yy = m.t + i * (barHeight + 6);
    const name = it.label.length > 30 ? `${it.label.slice(0, 29)}…` : it.label;
    svg.append(s("text", { x: m.l - 8, y: yy + barHeight * 0.7, "text-anchor": "end" }, name));
    const bar = s("rect", {
      class: it.hot ? "bar hot" : "bar", x: m.l, y: yy, height: barHeight, width: Math.max(2, (w * it.value) / max), rx: 3,
    });
    bar.append(s("title", {}, `${it.label}: ${it.value}`));
    svg.append(bar);
    svg.append(s("text", { class: "value", x: m.l + Math.max(2, (w * it.value) / max) + 6, y: yy + barHeight * 0.7 }, it.value));
  });
  if (!items.length) svg.append(s("text", { x: width / 2, y: height / 2 + 4, "text-anchor": "middle" }, "no data"));
  return svg;
}
