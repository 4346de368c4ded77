// Dashboard: endpoints online, detections over time, top rules, top endpoints by score.

import { barChart, bucketize, timeChart } from "../charts.js";
import { get } from "../api.js";
import { errorBox, fmtAgo, h, replace, table, toDate } from "../dom.js";
import { isOnline, listEndpoints, recentDetections } from "../data.js";
import { eventEndpoint, eventTime, signatures } from "../events.js";

function card(label, value, extra) {
  return h("div", { class: "card" }, h("div", { class: "value" }, value), h("div", { class: "label" }, label), extra);
}

async function settle(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (err) {
    return { ok: false, error: err };
  }
}

export async function render(root) {
  const [stats, eps, dets] = await Promise.all([
    settle(get("/stats")),
    settle(listEndpoints()),
    settle(recentDetections({ last: "24h", limit: 2000 })),
  ]);
  const endpoints = eps.ok ? eps.value : [];
  const detections = dets.ok ? dets.value : [];
  const online = endpoints.filter(isOnline).length;
  const s = stats.ok ? stats.value || {} : {};

  const now = new Date();
  const start = new Date(now.getTime() - 24 * 3600 * 1000);
  const points = bucketize(detections.map((e) => toDate(eventTime(e))), start, now, 48);

  const ruleCounts = new Map();
  const endpointHits = new Map();
  for (const e of detections) {
    for (const sig of signatures(e)) ruleCounts.set(sig, (ruleCounts.get(sig) || 0) + 1);
    const ep = eventEndpoint(e);
    if (ep.uuid) endpointHits.set(ep.uuid, (endpointHits.get(ep.uuid) || 0) + 1);
  }
  const topRules = [...ruleCounts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([label, value]) => ({ label, value }));
  const topEndpoints = [...endpoints]
    .sort((a, b) => (Number(b.score) || 0) - (Number(a.score) || 0))
    .slice(0, 10);

  replace(
    root,
    h("h1", {}, "Dashboard"),
    h("div", { class: "toolbar" }, h("button", { type: "button", class: "secondary", onclick: () => window.dispatchEvent(new HashChangeEvent("hashchange")) }, "Refresh")),
    stats.ok ? null : errorBox(stats.error),
    h(
      "div",
      { class: "cards" },
      card("Endpoints online", `${online} / ${endpoints.length}`),
      card("Detections (24 h)", detections.length),
      card("Rules loaded", s["rule-count"] ?? "—"),
      card("Endpoints enrolled", s["endpoint-count"] ?? endpoints.length),
    ),
    h(
      "div",
      { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "dash-time" },
        h("h2", { id: "dash-time" }, "Detections over the last 24 hours"),
        dets.ok ? timeChart(points, { label: `Detections per 30 minutes, last 24 hours: ${detections.length} in total` }) : errorBox(dets.error)),
      h("section", { class: "panel", "aria-labelledby": "dash-rules" },
        h("h2", { id: "dash-rules" }, "Top rules (24 h)"),
        barChart(topRules, { label: "Detections per rule, last 24 hours" })),
    ),
    h("section", { class: "panel", "aria-labelledby": "dash-eps" },
      h("h2", { id: "dash-eps" }, "Top endpoints by score"),
      eps.ok
        ? table(
          [
            { label: "Endpoint", render: (ep) => h("a", { href: `#/endpoints/${ep.uuid}` }, ep.hostname || ep.uuid) },
            { label: "Score", render: (ep) => Number(ep.score || 0).toFixed(1) },
            { label: "Detections (24 h)", render: (ep) => endpointHits.get(ep.uuid) || 0 },
            { label: "Group", key: "group" },
            { label: "Last seen", render: (ep) => fmtAgo(ep["last-connection"]) },
          ],
          topEndpoints,
          { empty: "No endpoint enrolled yet." },
        )
        : errorBox(eps.error)),
  );
  return undefined;
}
