// ATT&CK: detections per tactic and technique (from the rules' Meta.ATTACK), a heat matrix with
// drill-down to the rules behind a technique and from there to their alerts.

import { get } from "../api.js";
import { errorBox, field, h, replace, select } from "../dom.js";

function heat(count, max) {
  const level = max ? Math.ceil((4 * count) / max) : 0;
  return `heat-${Math.min(4, Math.max(1, level))}`;
}

function drill(tech, box, status) {
  replace(box,
    h("h2", { id: "attack-drill" }, `${tech.id} ${tech.name || ""}`.trim()),
    h("p", {}, `${tech.count} detection(s) from ${tech.rules.length} rule(s).`),
    h("ul", {}, tech.rules.map((r) => h("li", {},
      h("a", { href: `#/detections?status=${status === "all" ? "all" : status}&signature=${encodeURIComponent(r.name)}` }, r.name),
      ` — ${r.count} detection(s)`))));
  box.querySelector("h2").setAttribute("tabindex", "-1");
  box.querySelector("h2").focus();
}

export async function render(root, ctx) {
  const status = select("status", [["all", "All alerts"], ["open", "Open alerts"], ["false_positive", "False positives"]], ctx.params.get("status") || "all");
  const hours = select("hours", [["24", "last 24 hours"], ["168", "last 7 days"], ["720", "last 30 days"], ["2160", "last 90 days"]], ctx.params.get("hours") || "720");
  const grid = h("div", { class: "attack-grid", role: "list", "aria-label": "ATT&CK matrix" });
  const summary = h("p", { role: "status", id: "attack-summary" });
  const drillBox = h("section", { class: "panel", "aria-live": "polite" }, h("p", { class: "muted" }, "Choose a technique to see its rules and alerts."));

  async function load() {
    const m = await get("/alerts/attack", { status: status.value, hours: hours.value });
    const max = Math.max(0, ...m.tactics.flatMap((t) => t.techniques.map((x) => x.count)));
    summary.textContent = `${m.detections} detection(s); ${m.detections - m.unmapped} mapped to ATT&CK, ${m.unmapped} from rules without ATT&CK metadata.`;
    replace(grid, m.tactics.length ? m.tactics.map((t) => h("div", { class: "attack-col", role: "listitem" },
      h("h3", {}, t.tactic, h("span", { class: "muted" }, ` ${t.count}`)),
      t.techniques.map((x) => h("button", { type: "button", class: `attack-cell ${heat(x.count, max)}`, "data-technique": x.id,
        "aria-label": `${x.id} ${x.name}: ${x.count} detection(s)`, onclick: () => drill(x, drillBox, status.value) },
      h("span", { class: "mono" }, x.id), " ", x.name || "", h("strong", {}, ` ${x.count}`)))))
      : h("p", { class: "muted" }, "No detection maps to ATT&CK in this range."));
  }

  const form = h("form", { class: "inline", "aria-label": "ATT&CK filters" }, field("Alerts", status), field("Range", hours), h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await load(); } catch (err) { replace(summary, errorBox(err)); }
  });
  replace(root, h("h1", {}, "ATT&CK"), form, summary, grid, drillBox);
  await load();
}
