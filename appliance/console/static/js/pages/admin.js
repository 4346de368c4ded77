// Administration: enrollment (CA fingerprint, one-time tokens, offline bundles), the audit log
// and endpoint health (last seen, status, agent version, score). Admins only.

import { apiUrl, get, getPage, post } from "../api.js";
import { errorBox, field, fmtAgo, fmtTime, h, replace, saveBlob, table, toast } from "../dom.js";
import { endpointOs, isOnline, listEndpoints } from "../data.js";

function enrollment(ca) {
  const group = h("input", { type: "text", name: "token-group", autocomplete: "off" });
  const ttl = h("input", { type: "number", name: "ttl", min: "60", value: "86400" });
  const tokenOut = h("div", { "aria-live": "polite", id: "token-out" });
  const tokenForm = h("form", { class: "inline", "aria-label": "Create an enrollment token" },
    field("Group", group), field("Valid for (seconds)", ttl), h("button", { type: "submit" }, "Create token"));
  tokenForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const t = await post("/enroll/tokens", { group: group.value, ttl: Number(ttl.value) || undefined });
      replace(tokenOut, h("p", { role: "status" }, "Token (shown once): "), h("pre", { class: "mono", tabindex: "0" }, t.token),
        h("p", { class: "muted" }, `Expires ${fmtTime(t.expires)}; agents connect to ${t.endpoint_url} and pin CA ${t.ca_sha256}.`));
    } catch (err) {
      replace(tokenOut, errorBox(err));
    }
  });
  const host = h("input", { type: "text", name: "bundle-hostname", autocomplete: "off" });
  const bgroup = h("input", { type: "text", name: "bundle-group", autocomplete: "off" });
  const bundleOut = h("div", { "aria-live": "polite", id: "bundle-out" });
  const bundleForm = h("form", { class: "inline", "aria-label": "Create an offline bundle" },
    field("Hostname", host), field("Bundle group", bgroup), h("button", { type: "submit" }, "Download offline bundle"));
  bundleForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const resp = await fetch(apiUrl("/enroll/bundle?format=zip"), {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
        body: JSON.stringify({ hostname: host.value, group: bgroup.value }),
      });
      if (!resp.ok) throw new Error((await resp.json().catch(() => ({}))).error || `HTTP ${resp.status}`);
      const uuid = resp.headers.get("X-Heron-Endpoint") || "endpoint";
      saveBlob(await resp.blob(), `heron-bundle-${uuid}.zip`);
      replace(bundleOut, h("p", { role: "status" }, `Bundle for endpoint ${uuid} downloaded (its private key is in it: keep it safe).`));
    } catch (err) {
      replace(bundleOut, errorBox(err));
    }
  });
  return h("section", { class: "panel", "aria-labelledby": "adm-enroll" }, h("h2", { id: "adm-enroll" }, "Enrollment"),
    h("dl", { class: "kv" }, h("dt", {}, "Endpoint URL"), h("dd", { class: "mono" }, ca.endpoint_url),
      h("dt", {}, "CA fingerprint (sha256)"), h("dd", { class: "mono", id: "ca-fp" }, ca.ca_sha256)),
    h("h3", {}, "One-time token"), tokenForm, tokenOut,
    h("h3", {}, "Offline bundle (air-gapped endpoints)"), bundleForm, bundleOut);
}

function csrf() {
  const m = document.cookie.split(";").map((c) => c.trim()).find((c) => c.startsWith("__Host-heron-csrf="));
  return m ? decodeURIComponent(m.split("=").slice(1).join("=")) : "";
}

const AUDIT_PAGE = 500;

function auditLog(first) {
  const rows = first.data || [];
  let next = first.next;
  const filter = h("input", { type: "search", name: "audit-filter", autocomplete: "off", placeholder: "actor, action, target…" });
  const box = h("div", { class: "json-table" });
  const more = h("button", { type: "button", class: "secondary", id: "audit-more", hidden: !next, onclick: async () => {
    try {
      const page = await getPage("/audit", { limit: AUDIT_PAGE, cursor: next });
      rows.push(...(page.data || []));
      next = page.next;
      more.hidden = !next;
      show();
    } catch (err) {
      toast(err.message, "error");
    }
  } }, "Older entries");
  const show = () => {
    const needle = filter.value.trim().toLowerCase();
    const hits = needle ? rows.filter((r) => JSON.stringify(r).toLowerCase().includes(needle)) : rows;
    replace(box, table([
      { label: "Time (UTC)", class: "mono", render: (r) => fmtTime(r.ts) },
      { label: "Who", render: (r) => `${r.actor} (${r.role})` },
      { label: "Action", class: "mono", render: (r) => r.action },
      { label: "Target", class: "mono", render: (r) => r.target },
      { label: "Detail", class: "mono", render: (r) => (r.detail ? JSON.stringify(r.detail) : "—") },
    ], hits, { caption: `${hits.length} entr${hits.length === 1 ? "y" : "ies"} loaded, newest first${next ? " (older: below)" : ""}`, empty: "No entry." }));
  };
  filter.addEventListener("input", show);
  show();
  return h("section", { class: "panel", "aria-labelledby": "adm-audit" }, h("h2", { id: "adm-audit" }, "Audit log"),
    field("Filter the audit log", filter), box, more);
}

function rulesCell(e) {
  const r = e.rules;
  if (!r) return "not reported";
  const label = { ok: "ok", "no-rules": "NO RULES", outdated: "outdated" }[r.status] || r.status;
  return h("span", { class: r.status === "ok" ? "" : "status-warn", title: `sha256 ${r.sha256 || "?"}, updated ${r.updated || "?"}` },
    `${r.count} (${label}, ${String(r.sha256 || "").slice(0, 12) || "no hash"})`);
}

function sensorCell(e) {
  const c = e["agent-counters"];
  if (!c || !c.sources) return "—";
  return Object.entries(c.sources).map(([name, s]) => `${name}${s.running === false ? " (stopped)" : ""}`).join(", ") || "—";
}

function lossesCell(e) {
  const c = e["agent-counters"];
  if (!c || !c.sources) return "—";
  let lost = 0;
  let degraded = 0;
  for (const s of Object.values(c.sources)) {
    lost += (s.lost || 0) + (s.drops || 0) + (s.shed || 0);
    degraded += (s.degraded || 0) + (s.incomplete || 0);
  }
  return `${lost} lost, ${degraded} degraded`;
}

function health(eps) {
  return h("section", { class: "panel", "aria-labelledby": "adm-health" }, h("h2", { id: "adm-health" }, "Endpoint health"),
    table([
      { label: "Endpoint", render: (e) => h("a", { href: `#/endpoints/${e.uuid}` }, e.hostname || e.uuid) },
      { label: "Status", render: (e) => `${e.status || "—"}${isOnline(e) ? ", online" : ", offline"}` },
      { label: "Last seen", render: (e) => fmtAgo(e["last-connection"]) },
      { label: "Last event", render: (e) => fmtAgo(e["last-event"]) },
      { label: "Rules (count, state, hash)", render: rulesCell },
      { label: "Sensor", render: sensorCell },
      { label: "Losses", render: lossesCell },
      { label: "Agent", render: (e) => ((e["system-info"] || {}).edr || {}).version || "—" },
      { label: "System", render: (e) => endpointOs(e) || "—" },
      { label: "Score", render: (e) => Number(e.score || 0).toFixed(1) },
    ], eps, { empty: "No endpoint enrolled." }));
}

export async function render(root) {
  const [ca, audit, eps] = await Promise.all([get("/enroll/ca"), getPage("/audit", { limit: AUDIT_PAGE }), listEndpoints()]);
  replace(root, h("h1", {}, "Administration"), enrollment(ca), health(eps), auditLog(audit || []));
}
