// MISP: connection and feature settings, test connection, manual sync, sync status.

import { get, post, put } from "../api.js";
import { errorBox, field, fmtTime, h, replace, select, toast } from "../dom.js";

// [key, label, kind, hint] — the settings the console edits (the rest keep their values).
const FIELDS = [
  ["enabled", "Sync enabled", "bool"],
  ["url", "MISP URL", "text", "Base URL of MISP, starting with https"],
  ["api_key", "API key", "secret", "Leave empty to keep the stored key."],
  ["verify_tls", "Verify TLS certificate", "bool"],
  ["ca_file", "CA bundle (path on the manager)", "text"],
  ["pull_enabled", "Pull IoCs", "bool"],
  ["pull_interval", "Pull interval (seconds)", "number"],
  ["ioc_types", "MISP types pulled (comma separated)", "list"],
  ["tags", "Tag filter (comma separated, !tag excludes)", "list"],
  ["published_only", "Published events only", "bool"],
  ["enforce_warninglist", "Honour warninglists", "bool"],
  ["sightings_enabled", "Push sightings", "bool"],
  ["reports_enabled", "Push IR reports (edr-report objects)", "bool"],
  ["report_tags", "Report tags (comma separated)", "list"],
  ["report_distribution", "Report distribution (0–5)", "number"],
  ["report_publish", "Publish the day event after each report (needs perm_publish)", "bool"],
  ["report_since", "Push reports detected since (YYYY-MM-DD; empty: since enabled)", "text"],
  ["report_max_per_hour", "Reports pushed per hour at most", "number"],
  ["sighting_lookup", "Look up file names, registry keys, pipes in MISP (sends candidate values)", "bool"],
];

const STREAMS = [
  ["pull", "IoC pull", (s) => `${s.iocs ?? 0} IoCs${s.resume ? `, resumes at page ${s.resume.page}` : ""}`],
  ["sightings", "Sightings", (s) => `${s.sent ?? 0} sent, ${s.queued_batches ?? 0} queued`],
  ["reports", "Reports", (s) => `${s.pushed ?? 0} pushed, ${s.queued ?? 0} queued`],
];

// Per-stream state, dead letters, permissions, backfill and notes, before the raw status.
function overview(st) {
  if (!st || typeof st !== "object" || st.error) return h("div");
  const rows = STREAMS.map(([key, label, counts]) => {
    const s = st[key] || {};
    return h("tr", {},
      h("th", { scope: "row" }, label),
      h("td", { class: `state-${s.state || "off"}` }, s.state || "off"),
      h("td", {}, counts(s)),
      h("td", {}, String(s.dead_letters ?? "—")),
      h("td", {}, s.last_success ? fmtTime(s.last_success) : "—"),
      h("td", {}, s.last_error || ""));
  });
  const streams = h("table", { class: "misp-streams" },
    h("caption", {}, "Streams"),
    h("thead", {}, h("tr", {}, ...["Stream", "State", "Counts", "Dead letters", "Last success", "Last error"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows));
  const perms = Object.entries(st.permissions || {});
  const missing = new Set(st.missing_permissions || []);
  const permList = perms.length
    ? h("ul", { class: "misp-perms" }, perms.map(([p, ok]) => h("li", { class: ok ? "" : missing.has(p) ? "error" : "muted" }, `${p}: ${ok ? "yes" : "no"}`)))
    : h("p", { class: "muted" }, "Permissions are read when MISP is first contacted.");
  const bf = (st.reports || {}).backfill || {};
  const backfill = h("p", {}, `Reports since ${bf.since ? fmtTime(bf.since) : "—"}: ${bf.pushed_last_hour ?? 0} pushed in the last hour (at most ${bf.max_per_hour ?? "—"}), ${bf.remaining ?? 0} waiting, ${bf.skipped_before_since ?? 0} older ones skipped.`);
  const notes = Object.entries((st.reports || {}).notes || {});
  return h("div", { class: "misp-overview" },
    streams,
    h("h3", {}, `Role ${st.role || "?"} (${st.user || "?"})`), permList,
    h("h3", {}, "Report backfill"), backfill,
    notes.length ? h("ul", { class: "misp-notes", role: "status" }, notes.map(([k, v]) => h("li", {}, `${k}: ${v}`))) : h("div"));
}

function deadLetterView(items, isAdmin, onAction) {
  if (!items.length) return h("p", { class: "muted" }, "No dead letters.");
  const rows = items.map((d) => h("tr", {},
    h("td", {}, d.stream),
    h("td", {}, fmtTime(d.time)),
    h("td", {}, String(d.attempts)),
    h("td", {}, (d.item && (d.item.dir || (d.item.values || []).join(", "))) || ""),
    h("td", {}, d.error),
    h("td", {},
      h("button", { type: "button", class: "secondary", disabled: !isAdmin, onclick: () => onAction("retry", [d.id]) }, "Retry"),
      h("button", { type: "button", class: "secondary", disabled: !isAdmin, onclick: () => onAction("discard", [d.id]) }, "Discard"))));
  return h("table", { class: "misp-dead" },
    h("caption", {}, "Items MISP refused or that failed too often"),
    h("thead", {}, h("tr", {}, ...["Stream", "Since", "Attempts", "Item", "Error", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows));
}

function control(key, kind, value, disabled) {
  if (kind === "bool") return h("input", { type: "checkbox", name: key, checked: Boolean(value), disabled });
  if (kind === "number") return h("input", { type: "number", name: key, value: String(value ?? ""), step: "any", disabled });
  if (kind === "list") return h("input", { type: "text", name: key, class: "wide", value: (value || []).join(", "), disabled });
  if (kind === "secret") return h("input", { type: "password", name: key, value: "", autocomplete: "off", disabled });
  return h("input", { type: "text", name: key, class: "wide", value: String(value ?? ""), disabled, spellcheck: "false" });
}

function statusView(st) {
  if (!st || typeof st !== "object") return h("p", { class: "muted" }, "No status yet.");
  const rows = [];
  const walk = (obj, prefix) => {
    for (const [k, v] of Object.entries(obj)) {
      if (v && typeof v === "object" && !Array.isArray(v)) walk(v, `${prefix}${k}.`);
      else rows.push([`${prefix}${k}`, /time|last|_at$/.test(k) && v ? `${v} (${fmtTime(v)})` : Array.isArray(v) ? v.join(", ") : String(v ?? "—")]);
    }
  };
  walk(st, "");
  return h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export async function render(root, ctx) {
  const isAdmin = ctx.session.role === "admin";
  // Several MISP instances: `#/misp?instance=<name>` addresses one (the default without it).
  const instance = ctx.params.get("instance") || "";
  const q = instance ? { instance } : {};
  // Settings are admin-only on the API; analysts see the status only.
  const [settings, status, instances] = await Promise.all([
    isAdmin ? get("/misp/settings", q) : Promise.resolve({}),
    get("/misp/status", q).catch((err) => ({ error: err.message })),
    get("/misp/instances").catch(() => []),
  ]);
  const picker = select("instance", (instances || []).map((i) => [i.name === "default" ? "" : i.name, `${i.name}${i.url ? ` (${i.url})` : ""}`]), instance);
  picker.addEventListener("change", () => { window.location.hash = picker.value ? `#/misp?instance=${encodeURIComponent(picker.value)}` : "#/misp"; });
  const s = settings || {};
  const controls = {};
  const formStatus = h("div", { "aria-live": "assertive" });
  const statusBox = h("div", { "aria-live": "polite" }, overview(status), h("details", {}, h("summary", {}, "All status fields"), statusView(status)));
  const deadBox = h("div", { "aria-live": "polite" });
  const inputs = FIELDS.map(([key, label, kind, hint]) => {
    controls[key] = control(key, kind, s[key], !isAdmin);
    return field(kind === "secret" && s.api_key_set ? `${label} (a key is stored)` : label, controls[key], hint);
  });

  function collect() {
    const out = {};
    for (const [key, , kind] of FIELDS) {
      const el = controls[key];
      if (kind === "bool") out[key] = el.checked;
      else if (kind === "number") out[key] = Number(el.value);
      else if (kind === "list") out[key] = el.value.split(",").map((v) => v.trim()).filter(Boolean);
      else if (kind === "secret") {
        if (el.value) out[key] = el.value;
      } else out[key] = el.value.trim();
    }
    return out;
  }

  async function refreshStatus() {
    try {
      const st = await get("/misp/status", q);
      replace(statusBox, overview(st), h("details", {}, h("summary", {}, "All status fields"), statusView(st)));
    } catch (err) {
      replace(statusBox, errorBox(err));
    }
    await refreshDead();
  }

  async function refreshDead() {
    if (!isAdmin) return;
    try {
      replace(deadBox, deadLetterView(await get("/misp/dead-letters", q), isAdmin, deadAction));
    } catch (err) {
      replace(deadBox, errorBox(err));
    }
  }

  async function deadAction(action, ids) {
    try {
      const res = await post(`/misp/dead-letters/${action}`, ids ? { ids } : {}, q);
      toast(action === "retry" ? `${res.requeued} item(s) queued again` : `${res.discarded} item(s) discarded`);
      await refreshStatus();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  const form = h("form", { "aria-labelledby": "misp-settings", class: "misp-form" }, h("div", { class: "grid" }, inputs), formStatus,
    h("div", { class: "actions" },
      h("button", { type: "submit", disabled: !isAdmin }, "Save settings"),
      h("button", { type: "button", class: "secondary", disabled: !isAdmin, onclick: test }, "Test connection"),
      h("button", { type: "button", class: "secondary", disabled: !isAdmin, onclick: sync }, "Sync now")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await put("/misp/settings", collect(), q);
      controls.api_key.value = "";
      replace(formStatus, h("p", { role: "status" }, "Settings saved."));
      toast("MISP settings saved");
      await refreshStatus();
    } catch (err) {
      replace(formStatus, errorBox(err));
    }
  });

  async function test() {
    replace(formStatus, h("p", {}, "Testing…"));
    try {
      const res = await post("/misp/test", {}, q);
      const ok = Boolean(res && res.ok);
      replace(formStatus, h("p", { role: "status", class: ok ? "" : "error" },
        ok ? `Connection OK${res.version ? ` (MISP ${res.version})` : ""}, role ${res.role}.` : `Connection failed: ${(res && (res.error || res.message)) || "unknown error"}`),
        ...(ok && res.effects && res.effects.length ? [h("ul", { class: "error" }, res.missing_permissions.map((p, i) => h("li", {}, `${p} missing: ${res.effects[i]}`)))] : []),
        ...(ok && res.rate_limit && res.rate_limit.limit ? [h("p", {}, `Searches limited to ${res.rate_limit.limit} per 15 min (${res.rate_limit.remaining} left).`)] : []));
    } catch (err) {
      replace(formStatus, errorBox(err));
    }
  }

  async function sync() {
    try {
      await post("/misp/sync", {}, q);
      toast("MISP sync started");
      await refreshStatus();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  replace(root, h("h1", {}, "MISP"),
    (instances || []).length > 1 ? h("div", { class: "toolbar" }, field("MISP instance", picker)) : h("div"),
    h("section", { class: "panel", "aria-labelledby": "misp-settings" }, h("h2", { id: "misp-settings" }, "Settings"),
      isAdmin ? form : h("p", { class: "muted" }, "Only admins can see and change MISP settings.")),
    h("section", { class: "panel", "aria-labelledby": "misp-status" }, h("h2", { id: "misp-status" }, "Sync status"),
      h("div", { class: "toolbar" }, h("button", { type: "button", class: "secondary", onclick: refreshStatus }, "Refresh status")), statusBox),
    isAdmin ? h("section", { class: "panel", "aria-labelledby": "misp-dead" }, h("h2", { id: "misp-dead" }, "Dead letters"),
      h("div", { class: "toolbar" },
        h("button", { type: "button", class: "secondary", onclick: () => deadAction("retry") }, "Retry all"),
        h("button", { type: "button", class: "secondary", onclick: () => deadAction("discard") }, "Discard all")), deadBox) : h("div"));
  await refreshDead();
}
