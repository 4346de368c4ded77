// Search: query language, time range, endpoint filter, results table with event detail.

import { searchEvents } from "../data.js";
import { errorBox, field, h, modal, replace, select, table, tableRow } from "../dom.js";
import { eventColumns, eventDetail } from "../events.js";
import { fieldSuggestions } from "../fields.js";

function showEvent(e) {
  modal("Event detail", (close) => h("div", {}, eventDetail(e), h("p", {}, h("button", { type: "button", onclick: () => close() }, "Close"))));
}

function localToIso(v) {
  return v ? new Date(v).toISOString() : "";
}

export async function render(root, ctx) {
  const p = ctx.params;
  const q = h("input", { type: "search", name: "q", class: "wide", value: p.get("q") || "", autocomplete: "off", spellcheck: "false", placeholder: "Image:*powershell* AND EventID:1" });
  const last = select("last", [["15m", "last 15 minutes"], ["1h", "last hour"], ["24h", "last 24 hours"], ["7d", "last 7 days"], ["30d", "last 30 days"], ["", "custom range"]], p.get("last") ?? "24h");
  const since = h("input", { type: "datetime-local", name: "since" });
  const until = h("input", { type: "datetime-local", name: "until" });
  const endpoint = h("input", { type: "text", name: "endpoint", value: p.get("endpoint") || "", autocomplete: "off", placeholder: "endpoint uuid" });
  const limit = select("limit", [["50", "50"], ["100", "100"], ["500", "500"], ["1000", "1000"]], "100");
  const status = h("p", { "aria-live": "polite", class: "muted" });
  const box = h("div");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  const columns = eventColumns(showEvent);
  let cursor = "";
  let shown = 0;
  let tbody = null;

  const query = () => ({
    q: q.value.trim(),
    last: last.value,
    since: last.value ? "" : localToIso(since.value),
    until: last.value ? "" : localToIso(until.value),
    endpoint: endpoint.value.trim(),
    limit: Number(limit.value),
  });

  async function run(append) {
    status.textContent = "Searching…";
    try {
      const page = await searchEvents({ ...query(), cursor: append ? cursor : "" });
      cursor = page.next;
      if (!append || !tbody) {
        const t = table(columns, page.events, { caption: "Results, newest first", empty: "No event matches." });
        tbody = t.tBodies[0];
        shown = page.events.length;
        replace(box, t);
      } else {
        for (const e of page.events) tbody.append(tableRow(columns, e));
        shown += page.events.length;
      }
      more.hidden = !cursor;
      status.textContent = `${shown} event(s) shown${page.total ? ` of ${page.total}` : ""}.`;
    } catch (err) {
      status.textContent = "";
      replace(box, errorBox(err));
      more.hidden = true;
    }
  }

  const form = h(
    "form",
    { class: "inline", role: "search", "aria-label": "Search events" },
    h("div", { class: "field-with-suggest" }, field("Query", q, "Field queries (Image:*cmd.exe*), phrases, AND/OR/NOT, ranges."), fieldSuggestions(q)),
    field("Time range", last),
    field("Since", since),
    field("Until", until),
    field("Endpoint", endpoint),
    field("Limit", limit),
    h("button", { type: "submit" }, "Search"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    run(false);
  });
  more.addEventListener("click", () => run(true));
  replace(root, h("h1", {}, "Search"), form, status, box, h("p", {}, more));
  if (p.get("q")) await run(false);
}
