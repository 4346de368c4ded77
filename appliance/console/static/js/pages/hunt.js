// Hunting: read-only SQL over the events table (results table, CSV export) and retro-hunts with
// Gene rules over stored events (POST /hunt/rules, synchronous on this manager).

import { post } from "../api.js";
import { errorBox, field, h, replace, saveBlob, table } from "../dom.js";

const MAX_SHOWN = 2000;

/** RFC 4180 CSV (every field quoted; formulas are not neutralised: open as data). */
export function toCsv(columns, rows) {
  const cell = (v) => `"${(v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v)).replace(/"/g, '""')}"`;
  return [columns.map(cell).join(","), ...rows.map((r) => r.map(cell).join(","))].join("\r\n") + "\r\n";
}

function sqlPanel() {
  const query = h("textarea", { name: "sql", rows: "5", spellcheck: "false" },
    "SELECT image, count(*) AS n FROM events GROUP BY image ORDER BY n DESC LIMIT 50");
  const status = h("p", { role: "status", id: "sql-status" });
  const box = h("div", { class: "json-table" });
  const csv = h("button", { type: "button", class: "secondary", disabled: true }, "Export CSV");
  let last = null;
  csv.addEventListener("click", () => {
    if (last) saveBlob(new Blob([toCsv(last.columns, last.rows)], { type: "text/csv" }), "heron-query.csv");
  });
  const form = h("form", { "aria-labelledby": "hunt-sql" }, field("SQL (one SELECT over events)", query),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Run query"), csv));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    status.textContent = "Running…";
    try {
      const res = await post("/hunt/sql", { query: query.value, max_rows: 100000 });
      last = res;
      csv.disabled = !res.rows.length;
      const cols = res.columns.map((c, i) => ({ label: c, class: "mono", render: (r) => (r[i] === null ? "—" : typeof r[i] === "object" ? JSON.stringify(r[i]) : String(r[i])) }));
      replace(box, table(cols, res.rows.slice(0, MAX_SHOWN), { empty: "No row." }));
      status.textContent = `${res.rows.length} row(s)${res.truncated ? " (truncated)" : ""}${res.rows.length > MAX_SHOWN ? `, first ${MAX_SHOWN} shown; the CSV has them all` : ""}.`;
    } catch (err) {
      status.textContent = "";
      replace(box, errorBox(err));
    }
  });
  return h("section", { class: "panel", "aria-labelledby": "hunt-sql" }, h("h2", { id: "hunt-sql" }, "SQL"), form, status, box);
}

function retroPanel(session) {
  const rules = h("textarea", { name: "retro-rules", rows: "8", spellcheck: "false" });
  const last = h("input", { type: "text", name: "since", value: "", placeholder: "2026-01-01T00:00:00Z", autocomplete: "off" });
  const endpoint = h("input", { type: "text", name: "endpoint", placeholder: "all endpoints", autocomplete: "off" });
  const store = h("input", { type: "checkbox", name: "store", disabled: session.role !== "admin" });
  const status = h("p", { role: "status", id: "retro-status" });
  const box = h("div");
  const form = h("form", { "aria-labelledby": "hunt-retro" },
    field("Gene rules (JSON object or list)", rules), field("Since (RFC 3339, optional)", last), field("Endpoint", endpoint),
    h("label", {}, store, " Keep the matches as retro detections (admins)"),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Run retro-hunt")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(rules.value);
    } catch (err) {
      replace(box, errorBox(`rules are not JSON: ${err.message}`));
      return;
    }
    status.textContent = "Hunting…";
    const started = performance.now();
    try {
      const res = await post("/hunt/rules", { rules: parsed, since: last.value.trim() || undefined, endpoint: endpoint.value.trim() || undefined, store: store.checked || undefined });
      status.textContent = `${res.matches.length} match(es) in ${res.scanned} event(s) scanned${res.truncated ? " (stopped at the limit)" : ""}${res.stored ? `, ${res.stored} stored` : ""}, ${((performance.now() - started) / 1000).toFixed(1)} s.`;
      replace(box, table([
        { label: "Endpoint", render: (e) => ((e.Event || {}).EdrData || {}).Endpoint?.Hostname || "" },
        { label: "Rules", render: (e) => (((e.Event || {}).Detection || {}).Signature || []).join(", ") },
        { label: "Image", class: "mono", render: (e) => ((e.Event || {}).EventData || {}).Image || "" },
        { label: "Command line", class: "mono", render: (e) => String(((e.Event || {}).EventData || {}).CommandLine || "").slice(0, 200) },
      ], res.matches, { empty: "No stored event matches." }));
    } catch (err) {
      status.textContent = "";
      replace(box, errorBox(err));
    }
  });
  return h("section", { class: "panel", "aria-labelledby": "hunt-retro" }, h("h2", { id: "hunt-retro" }, "Retro-hunt"),
    h("p", { class: "muted" }, "Runs the rules over stored events now and answers when done (background jobs with progress and cancel are not on this manager yet)."),
    form, status, box);
}

export async function render(root, ctx) {
  replace(root, h("h1", {}, "Hunting"), sqlPanel(), retroPanel(ctx.session));
}
