// Rules: list with hit counts (and a chart), edit with a compile check on save, add, delete.

import { del, get, post } from "../api.js";
import { barChart } from "../charts.js";
import { overview } from "../data.js";
import { confirmDialog, errorBox, field, h, replace, table, toast } from "../dom.js";

const TEMPLATE = {
  Name: "NewRule",
  Tags: [],
  Meta: { Events: { "Microsoft-Windows-Sysmon/Operational": [1] }, Computers: [], Criticality: 5, Author: "", Comment: "", Schema: "2.0.0" },
  Matches: ["$img: Image ~= '(?i:\\\\evil\\.exe$)'"],
  Condition: "$img",
};

const ruleName = (r) => r.Name || r.name || "";

function criticalityOf(r) {
  return (r.Meta && r.Meta.Criticality) ?? r.criticality ?? "";
}

const HIT_DAYS = 30;

async function loadStats() {
  const data = await overview({ hours: HIT_DAYS * 24, buckets: 1, top: 1 });
  return Object.fromEntries(data.rules.map((r) => [r.name, r.hits]));
}

export async function render(root, ctx) {
  const isAdmin = ctx.session.role === "admin";
  const filter = h("input", { type: "search", name: "name", autocomplete: "off", value: ctx.params.get("name") || "" });
  const listBox = h("div");
  const chartBox = h("div");
  const editor = h("textarea", { name: "rule", spellcheck: "false", "aria-describedby": "rule-status", disabled: !isAdmin });
  const editorStatus = h("div", { id: "rule-status", "aria-live": "assertive" });
  const editorTitle = h("h2", { id: "rule-editor-title", tabindex: "-1" }, "New rule");
  let editing = null;

  function edit(rule) {
    editing = rule ? ruleName(rule) : null;
    editorTitle.textContent = rule ? `Edit rule ${ruleName(rule)}` : "New rule";
    editor.value = JSON.stringify(rule || TEMPLATE, null, 2);
    replace(editorStatus);
    editorTitle.focus();
  }

  async function load() {
    const [rules, stats] = await Promise.all([get("/rules", { name: filter.value.trim() }), loadStats()]);
    const list = Array.isArray(rules) ? rules : rules.rules || [];
    const hits = (r) => stats[ruleName(r)] || 0;
    list.sort((a, b) => hits(b) - hits(a) || ruleName(a).localeCompare(ruleName(b)));
    replace(
      listBox,
      table(
        [
          { label: "Name", class: "mono", render: ruleName },
          { label: "Criticality", render: criticalityOf },
          { label: `Hits (${HIT_DAYS} d)`, render: hits },
          { label: "Condition", class: "mono", render: (r) => String(r.Condition || "").slice(0, 80) },
          {
            label: "Actions",
            render: (r) => h("div", { class: "actions" },
              h("button", { type: "button", class: "secondary", "aria-label": `Edit ${ruleName(r)}`, onclick: () => edit(r) }, isAdmin ? "Edit" : "View"),
              isAdmin ? h("button", { type: "button", class: "danger", "aria-label": `Delete ${ruleName(r)}`, onclick: () => remove(r) }, "Delete") : null),
          },
        ],
        list,
        { caption: `${list.length} rule(s)`, empty: "No rule loaded." },
      ),
    );
    const top = list.filter((r) => hits(r) > 0).slice(0, 12).map((r) => ({ label: ruleName(r), value: Number(hits(r)), hot: criticalityOf(r) >= 8 }));
    replace(chartBox, barChart(top, { label: `Hits per rule over the last ${HIT_DAYS} days` }));
  }

  async function remove(rule) {
    if (!(await confirmDialog("Delete rule", `Delete rule ${ruleName(rule)}? Agents drop it at their next update.`, "Delete"))) return;
    try {
      await del("/rules", { name: ruleName(rule) });
      toast(`Rule ${ruleName(rule)} deleted`);
      await load();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  async function save(ev) {
    ev.preventDefault();
    let rule;
    try {
      rule = JSON.parse(editor.value);
    } catch (err) {
      replace(editorStatus, errorBox(`Not valid JSON: ${err.message}`));
      editor.focus();
      return;
    }
    try {
      const update = editing !== null || undefined;
      await post("/rules", [rule], { update: update ? "true" : "" });
      replace(editorStatus, h("p", { role: "status" }, `Rule ${ruleName(rule)} compiled and saved.`));
      toast(`Rule ${ruleName(rule)} saved`);
      editing = ruleName(rule);
      editorTitle.textContent = `Edit rule ${editing}`;
      await load();
    } catch (err) {
      replace(editorStatus, errorBox(`Rejected: ${err.message}`));
      editor.focus();
    }
  }

  // Test the editor's rule against stored events (a retro-hunt of the last 7 days) before saving.
  const testOut = h("div", { id: "rule-test", "aria-live": "polite" });
  async function testRule() {
    let rule;
    try {
      rule = JSON.parse(editor.value);
    } catch (err) {
      replace(testOut, errorBox(`Not valid JSON: ${err.message}`));
      return;
    }
    replace(testOut, h("p", { role: "status" }, "Testing against stored events…"));
    try {
      const since = new Date(Date.now() - 7 * 86400 * 1000).toISOString();
      const res = await post("/hunt/rules", { rules: [rule], since, limit: 1000 });
      replace(testOut, h("p", { role: "status" }, `Would match ${res.matches.length}${res.truncated ? "+" : ""} of ${res.scanned} stored event(s) of the last 7 days.`),
        res.matches.length ? h("ul", { class: "mono" }, res.matches.slice(0, 20).map((e) => h("li", {},
          `${((e.Event || {}).System || {}).Computer || ""} ${((e.Event || {}).EventData || {}).Image || ""} ${String(((e.Event || {}).EventData || {}).CommandLine || "").slice(0, 160)}`))) : null);
    } catch (err) {
      replace(testOut, errorBox(`Test failed: ${err.message}`));
    }
  }

  const filterForm = h("form", { class: "inline", role: "search", "aria-label": "Filter rules" },
    field("Name (regular expression)", filter), h("button", { type: "submit" }, "Filter"));
  filterForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load().catch((err) => replace(listBox, errorBox(err)));
  });
  const editorForm = h("form", { "aria-labelledby": "rule-editor-title" },
    field("Rule (Gene JSON)", editor), editorStatus, testOut,
    h("div", { class: "actions" },
      h("button", { type: "submit", disabled: !isAdmin }, "Check and save"),
      h("button", { type: "button", class: "secondary", onclick: testRule }, "Test against stored events"),
      h("button", { type: "button", class: "secondary", disabled: !isAdmin, onclick: () => edit(null) }, "New rule")));
  editorForm.addEventListener("submit", save);

  replace(
    root,
    h("h1", {}, "Rules"),
    filterForm,
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "rules-list" }, h("h2", { id: "rules-list" }, "Loaded rules"), listBox),
      h("section", { class: "panel", "aria-labelledby": "rules-chart" }, h("h2", { id: "rules-chart" }, `Hits per rule (${HIT_DAYS} days)`), chartBox)),
    h("section", { class: "panel", "aria-labelledby": "rule-editor-title" }, editorTitle,
      isAdmin ? null : h("p", { class: "muted" }, "Analysts can read rules but not change them."), editorForm),
  );
  editor.value = JSON.stringify(TEMPLATE, null, 2);
  await load();
}
