// Hunting: read-only SQL over the events table (results table, CSV export) and retro-hunts with
// Gene rules over stored events as background jobs (POST /hunt/jobs: progress, cancel, matches
// paged by cursor).

import { del, get, post } from "../api.js";
import { errorBox, field, fmtTime, h, replace, saveBlob, table } from "../dom.js";

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

const MATCH_COLUMNS = [
  { label: "Endpoint", render: (e) => ((e.Event || {}).EdrData || {}).Endpoint?.Hostname || "" },
  { label: "Rules", render: (e) => (((e.Event || {}).Detection || {}).Signature || []).join(", ") },
  { label: "Image", class: "mono", render: (e) => ((e.Event || {}).EventData || {}).Image || "" },
  { label: "Command line", class: "mono", render: (e) => String(((e.Event || {}).EventData || {}).CommandLine || "").slice(0, 200) },
];
const ACTIVE = new Set(["queued", "running"]);

/** Every match of a job, by cursor (at most MAX_SHOWN). */
async function jobMatches(id) {
  const out = [];
  let cursor = "0";
  while (cursor !== null && out.length < MAX_SHOWN) {
    const page = await get(`/hunt/jobs/${encodeURIComponent(id)}/matches`, { cursor, limit: 500 });
    out.push(...page.events);
    if (!page.events.length && page.next_cursor === cursor) break; // still running, nothing new
    cursor = page.next_cursor;
  }
  return out;
}

function progressText(job) {
  const total = job.total === null || job.total === undefined ? "?" : job.total;
  return `${job.scanned} of ~${total} event(s) scanned, ${job.detections} detection(s)`;
}

function retroPanel(session, timers) {
  const rules = h("textarea", { name: "retro-rules", rows: "8", spellcheck: "false" });
  const last = h("input", { type: "text", name: "since", value: "", placeholder: "2026-01-01T00:00:00Z", autocomplete: "off" });
  const endpoint = h("input", { type: "text", name: "endpoint", placeholder: "all endpoints", autocomplete: "off" });
  const store = h("input", { type: "checkbox", name: "store", disabled: session.role !== "admin" });
  const status = h("p", { role: "status", id: "retro-status" });
  const bar = h("progress", { id: "retro-progress", max: "1", value: "0", hidden: true });
  const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel hunt");
  const box = h("div");
  const jobsBox = h("div", { id: "retro-jobs" });
  let current = null;

  async function showResult(job) {
    const matches = await jobMatches(job.id);
    const why = job.state === "done" ? (job.truncated ? " (stopped at the limit)" : "") : ` (${job.state})`;
    status.textContent = `${matches.length} match(es) in ${job.scanned} event(s) scanned${why}${job.stored ? `, ${job.stored} stored` : ""}${job.error ? `: ${job.error}` : ""}.`;
    replace(box, table(MATCH_COLUMNS, matches, { empty: "No stored event matches." }));
  }

  async function refreshJobs() {
    const jobs = await get("/hunt/jobs");
    replace(jobsBox, table([
      { label: "Created", render: (j) => fmtTime(j.created) },
      { label: "Rules", render: (j) => j.rule_names.join(", ") },
      { label: "State", render: (j) => j.state },
      { label: "Progress", render: (j) => progressText(j) },
      { label: "", render: (j) => {
        const show = h("button", { type: "button", class: "secondary", "aria-label": `Show matches of job ${j.id}` }, "Matches");
        show.addEventListener("click", () => showResult(j).catch((err) => replace(box, errorBox(err))));
        if (!ACTIVE.has(j.state)) return show;
        const stop = h("button", { type: "button", class: "secondary", "aria-label": `Cancel job ${j.id}` }, "Cancel");
        stop.addEventListener("click", () => del(`/hunt/jobs/${encodeURIComponent(j.id)}`).then(refreshJobs).catch((err) => replace(box, errorBox(err))));
        return h("span", {}, show, " ", stop);
      } },
    ], jobs, { empty: "No retro-hunt job yet." }));
    return jobs;
  }

  async function poll() {
    timers.id = null;
    if (!current || !box.isConnected) return;
    try {
      const job = await get(`/hunt/jobs/${encodeURIComponent(current)}`);
      bar.max = String(Math.max(1, job.total || job.scanned || 1));
      bar.value = String(job.scanned);
      await refreshJobs();
      if (ACTIVE.has(job.state)) {
        status.textContent = `Hunting… ${progressText(job)}.`;
        timers.id = setTimeout(poll, 500);
        return;
      }
      current = null;
      cancel.hidden = true;
      bar.hidden = true;
      await showResult(job);
    } catch (err) {
      current = null;
      status.textContent = "";
      replace(box, errorBox(err));
    }
  }

  cancel.addEventListener("click", async () => {
    if (!current) return;
    try {
      await del(`/hunt/jobs/${encodeURIComponent(current)}`);
    } catch (err) {
      replace(box, errorBox(err));
    }
  });
  const form = h("form", { "aria-labelledby": "hunt-retro" },
    field("Gene rules (JSON object or list)", rules), field("Since (RFC 3339, optional)", last), field("Endpoint", endpoint),
    h("label", {}, store, " Keep the matches as retro detections (admins)"),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Run retro-hunt"), cancel));
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
    replace(box);
    try {
      const job = await post("/hunt/jobs", { rules: parsed, since: last.value.trim() || undefined, endpoint: endpoint.value.trim() || undefined, store: store.checked || undefined });
      current = job.id;
      cancel.hidden = false;
      bar.hidden = false;
      if (timers.id) clearTimeout(timers.id);
      await poll();
    } catch (err) {
      status.textContent = "";
      replace(box, errorBox(err));
    }
  });
  refreshJobs().catch((err) => replace(jobsBox, errorBox(err)));
  return h("section", { class: "panel", "aria-labelledby": "hunt-retro" }, h("h2", { id: "hunt-retro" }, "Retro-hunt"),
    h("p", { class: "muted" }, "Runs the rules over stored events as a background job (time-limited, a bounded share of the CPU); follow its progress here, cancel it, or come back to its matches later."),
    form, bar, status, box,
    h("h3", { id: "hunt-jobs" }, "Jobs"), jobsBox);
}

export async function render(root, ctx) {
  const timers = { id: null };
  replace(root, h("h1", {}, "Hunting"), sqlPanel(), retroPanel(ctx.session, timers));
  return () => {
    if (timers.id) clearTimeout(timers.id);
  };
}
