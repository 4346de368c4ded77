// Detections: filtered list of recent detections, with live additions over SSE.

import { post, subscribe } from "../api.js";
import { searchEvents } from "../data.js";
import { errorBox, field, h, modal, replace, select, table, tableRow, toast } from "../dom.js";
import { criticality, detectionColumns, eventDetail, eventEndpoint, signatures } from "../events.js";

const MAX_ROWS = 500;

// Closing a detection as a false positive tells MISP (a type-1 sighting of its MISP IoCs).
async function falsePositive(e, out) {
  try {
    const res = await post("/misp/false-positive", { event: e, endpoint: eventEndpoint(e).uuid || undefined });
    const n = (res.values || []).length;
    replace(out, h("p", { role: "status" }, n ? `False positive sent to MISP for ${res.values.join(", ")}.` : "This event carries no MISP IoC."));
    if (n) toast("False positive sent to MISP");
  } catch (err) {
    replace(out, errorBox(err));
  }
}

function showEvent(e) {
  modal("Detection detail", (close) => {
    const out = h("div", { "aria-live": "polite" });
    return h("div", {}, eventDetail(e), out, h("p", {},
      h("button", { type: "button", class: "secondary", onclick: () => falsePositive(e, out) }, "False positive (tell MISP)"),
      h("button", { type: "button", onclick: () => close() }, "Close")));
  });
}

export async function render(root, ctx) {
  const p = ctx.params;
  const endpoint = h("input", { type: "text", name: "endpoint", value: p.get("endpoint") || "", placeholder: "endpoint uuid", autocomplete: "off" });
  const rule = h("input", { type: "text", name: "signature", value: p.get("signature") || "", autocomplete: "off" });
  const minCrit = h("input", { type: "number", name: "min_criticality", min: "0", max: "10", value: p.get("min_criticality") || "0" });
  const last = select("last", [["1h", "last hour"], ["24h", "last 24 hours"], ["7d", "last 7 days"], ["30d", "last 30 days"]], p.get("last") || "24h");
  const liveState = h("span", { class: "live", id: "live-state" }, "live: connecting");
  const announce = h("p", { class: "sr-only", "aria-live": "polite" });
  const box = h("div");
  const columns = detectionColumns(showEvent);
  let tbody = null;
  let count = 0;
  let close = null;

  const wanted = (e) => {
    if (endpoint.value && eventEndpoint(e).uuid !== endpoint.value.trim()) return false;
    if (rule.value && !signatures(e).includes(rule.value.trim())) return false;
    return criticality(e) >= (Number(minCrit.value) || 0);
  };

  function addLive(e) {
    if (!tbody || !wanted(e)) return;
    const placeholder = tbody.querySelector("td[colspan]");
    if (placeholder) placeholder.parentElement.remove();
    tbody.prepend(tableRow(columns, e, () => ({ class: "new", "data-live": "1" })));
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
    count += 1;
    announce.textContent = `New detection: ${signatures(e).join(", ")} on ${eventEndpoint(e).hostname}`;
  }

  function connect() {
    if (close) close();
    const query = { endpoint: endpoint.value.trim(), signature: rule.value.trim(), min_criticality: minCrit.value === "0" ? "" : minCrit.value };
    close = subscribe("/stream/detections", query, addLive, (open) => {
      liveState.classList.toggle("on", open);
      liveState.textContent = open ? "live: connected" : "live: reconnecting";
    });
  }

  async function load() {
    const { events } = await searchEvents({ detections: true, last: last.value, endpoint: endpoint.value.trim(), limit: MAX_ROWS });
    const rows = events.filter(wanted);
    const t = table(columns, rows, { caption: `Detections, newest first (live updates are highlighted)`, empty: "No detection in this range." });
    tbody = t.tBodies[0];
    count = rows.length;
    replace(box, t);
  }

  const form = h(
    "form",
    { class: "inline", role: "search", "aria-label": "Filter detections" },
    field("Endpoint", endpoint),
    field("Rule", rule),
    field("Minimum criticality", minCrit),
    field("Time range", last),
    h("button", { type: "submit" }, "Apply"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await load();
      connect();
    } catch (err) {
      replace(box, errorBox(err));
    }
  });
  replace(root, h("h1", {}, "Detections"), form, h("p", {}, liveState), announce, box);
  try {
    await load();
  } catch (err) {
    replace(box, errorBox(err));
  }
  connect();
  return () => {
    if (close) close();
  };
}
