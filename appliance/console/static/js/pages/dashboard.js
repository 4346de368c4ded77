// Dashboard: endpoints online, detections over time, top rules, top endpoints by score.

import { get } from "../api.js";
import { barChart, timeChart } from "../charts.js";
import { isOnline, listEndpoints, overview } from "../data.js";
import { errorBox, fmtAgo, h, replace, table } from "../dom.js";

function card(label, value) {
  return h("div", { class: "card" }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
}

async function settle(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (err) {
    return { ok: false, error: err };
  }
}

export async function render(root) {
  const [stats, eps, ov, queue] = await Promise.all([
    settle(get("/stats")),
    settle(listEndpoints()),
    settle(overview({ hours: 24, buckets: 48 })),
    settle(get("/alerts", { status: "open", limit: 1 })),
  ]);
  const endpoints = eps.ok ? eps.value : [];
  const online = endpoints.filter(isOnline).length;
  const s = stats.ok ? stats.value || {} : {};
  const o = ov.ok ? ov.value : { buckets: [], rules: [], endpoints: [], total: 0 };
  const points = o.buckets.map((b) => ({ t: new Date(b.t * 1000), v: b.count }));
  const topRules = o.rules.slice(0, 10).map((r) => ({ label: r.name, value: r.hits }));
  const hits = new Map(o.endpoints.map((e) => [e.uuid, e.detections]));
  const topEndpoints = [...endpoints]
    .sort((a, b) => (Number(b.score) || 0) - (Number(a.score) || 0) || (hits.get(b.uuid) || 0) - (hits.get(a.uuid) || 0))
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
      card("Detections (24 h)", o.total),
      card("Open alerts", queue.ok ? h("a", { href: "#/detections" }, String(queue.value.total)) : "—"),
      card("Rules", s["rule-count"] ?? "—"),
      card("IoCs", s["ioc-count"] ?? "—"),
    ),
    h(
      "div",
      { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "dash-time" },
        h("h2", { id: "dash-time" }, "Detections over the last 24 hours"),
        ov.ok ? timeChart(points, { label: `Detections per 30 minutes over the last 24 hours: ${o.total} in total` }) : errorBox(ov.error)),
      h("section", { class: "panel", "aria-labelledby": "dash-rules" },
        h("h2", { id: "dash-rules" }, "Top rules (24 h)"),
        barChart(topRules, { label: "Detections per rule over the last 24 hours" })),
    ),
    h("section", { class: "panel", "aria-labelledby": "dash-top-eps" },
      h("h2", { id: "dash-top-eps" }, "Top endpoints by detections (24 h)"),
      barChart(o.endpoints.slice(0, 10).map((e) => ({
        label: (endpoints.find((x) => x.uuid === e.uuid) || {}).hostname || e.uuid, value: e.detections, hot: e.max_criticality >= 8,
      })), { label: "Detections per endpoint over the last 24 hours" })),
    h("section", { class: "panel", "aria-labelledby": "dash-eps" },
      h("h2", { id: "dash-eps" }, "Top endpoints by score"),
      eps.ok
        ? table(
          [
            { label: "Endpoint", render: (ep) => h("a", { href: `#/endpoints/${ep.uuid}` }, ep.hostname || ep.uuid) },
            { label: "Score", render: (ep) => Number(ep.score || 0).toFixed(1) },
            { label: "Detections (24 h)", render: (ep) => hits.get(ep.uuid) || 0 },
            { label: "Group", key: "group" },
            { label: "Criticality", key: "criticality" },
            { label: "Last seen", render: (ep) => fmtAgo(ep["last-connection"]) },
          ],
          topEndpoints,
          { empty: "No endpoint enrolled yet." },
        )
        : errorBox(eps.error)),
  );
}
