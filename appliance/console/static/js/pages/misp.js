// MISP: connection and feature settings, test connection, manual sync, sync status.

import { get, post, put } from "../api.js";
import { errorBox, field, fmtTime, h, replace, toast } from "../dom.js";

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
];

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
  // Settings are admin-only on the API; analysts see the status only.
  const [settings, status] = await Promise.all([
    isAdmin ? get("/misp/settings") : Promise.resolve({}),
    get("/misp/status").catch((err) => ({ error: err.message })),
  ]);
  const s = settings || {};
  const controls = {};
  const formStatus = h("div", { "aria-live": "assertive" });
  const statusBox = h("div", { "aria-live": "polite" }, statusView(status));
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
      replace(statusBox, statusView(await get("/misp/status")));
    } catch (err) {
      replace(statusBox, errorBox(err));
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
      await put("/misp/settings", collect());
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
      const res = await post("/misp/test", {});
      const ok = Boolean(res && res.ok);
      replace(formStatus, h("p", { role: "status", class: ok ? "" : "error" },
        ok ? `Connection OK${res.version ? ` (MISP ${res.version})` : ""}.` : `Connection failed: ${(res && (res.error || res.message)) || "unknown error"}`));
    } catch (err) {
      replace(formStatus, errorBox(err));
    }
  }

  async function sync() {
    try {
      await post("/misp/sync", {});
      toast("MISP sync started");
      await refreshStatus();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  replace(root, h("h1", {}, "MISP"),
    h("section", { class: "panel", "aria-labelledby": "misp-settings" }, h("h2", { id: "misp-settings" }, "Settings"),
      isAdmin ? form : h("p", { class: "muted" }, "Only admins can see and change MISP settings.")),
    h("section", { class: "panel", "aria-labelledby": "misp-status" }, h("h2", { id: "misp-status" }, "Sync status"),
      h("div", { class: "toolbar" }, h("button", { type: "button", class: "secondary", onclick: refreshStatus }, "Refresh status")), statusBox));
}
