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

const SUPPRESSION_FIELDS = [
  ["rule", "Rule (name, or * for every rule)"],
  ["image_prefix", "Image starts with"],
  ["parent_prefix", "Parent image starts with"],
  ["command_line_regex", "Command line matches (regex)"],
  ["user", "User"],
  ["group", "Host group (empty: every endpoint)"],
  ["comment", "Comment"],
];

/** Noisiest rules (last 24 h) and the per-rule suppressions, with add and delete. */
function tuningPanels(isAdmin) {
  const noisyBox = h("div");
  const supBox = h("div", { "aria-live": "polite" });
  const status = h("div", { "aria-live": "assertive" });
  const inputs = Object.fromEntries(SUPPRESSION_FIELDS.map(([k]) => [k, h("input", { name: k, autocomplete: "off", disabled: !isAdmin })]));

  async function load() {
    const [noisy, sups] = await Promise.all([get("/stats/rules", { days: 1 }), get("/suppressions")]);
    replace(noisyBox, table([
      { label: "Rule", class: "mono", render: (r) => r.rule },
      { label: "Hits / day", render: (r) => String(r.hits_per_day) },
      { label: "Endpoints", render: (r) => String(r.endpoints) },
      { label: "Artifact bytes / day", render: (r) => String(r.artifact_bytes_per_day) },
    ], noisy || [], { caption: "Noisiest rules (24 h)", empty: "No detection in the last 24 hours." }));
    replace(supBox, table([
      { label: "Rule", class: "mono", render: (s) => s.rule },
      { label: "Conditions", class: "mono", render: (s) => ["image_prefix", "parent_prefix", "command_line_regex", "user"].filter((k) => s[k]).map((k) => `${k}=${s[k]}`).join(" ") },
      { label: "Group", render: (s) => s.group || "all" },
      { label: "Comment", render: (s) => s.comment || "" },
      { label: "Actions", render: (s) => isAdmin ? h("button", { type: "button", class: "danger", "aria-label": `Delete suppression ${s.id}`, onclick: () => remove(s) }, "Delete") : "" },
    ], sups || [], { caption: `${(sups || []).length} suppression(s)`, empty: "No suppression." }));
  }

  async function remove(s) {
    if (!(await confirmDialog("Delete suppression", `Delete the suppression of ${s.rule}?`, "Delete"))) return;
    try {
      await del(`/suppressions/${encodeURIComponent(s.id)}`);
      toast("Suppression deleted");
      await load();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  const form = h("form", { "aria-label": "Add a suppression" },
    SUPPRESSION_FIELDS.map(([k, label]) => field(label, inputs[k])), status,
    h("button", { type: "submit", disabled: !isAdmin }, "Add suppression"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value.trim()]).filter(([, v]) => v));
    try {
      await post("/suppressions", body);
      replace(status, h("p", { role: "status" }, `Suppression of ${body.rule} added; agents apply it at their next update.`));
      for (const el of Object.values(inputs)) el.value = "";
      await load();
    } catch (err) {
      replace(status, errorBox(`Rejected: ${err.message}`));
    }
  });
  const panels = [
    h("section", { class: "panel", "aria-labelledby": "rules-noisy" }, h("h2", { id: "rules-noisy" }, "Noisiest rules"), noisyBox),
    h("section", { class: "panel", "aria-labelledby": "rules-sup" }, h("h2", { id: "rules-sup" }, "Suppressions"), supBox, form),
  ];
  return { panels, load };
}

export async function render(root, ctx) {
  const isAdmin = ctx.session.role === "admin";
  const filter = h("input", { type: "search", name: "name", autocomplete: "off", value: ctx.params.get("name") || "" });
  const listBox = h("div");
  const chartBox = h("div");
  const packsBox = h("div", { "aria-live": "polite" });
  const versionsBox = h("div", { "aria-live": "polite" });
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
          { label: "Name", class: "mono", render: (r) => (r.Meta && r.Meta.Disable ? `${ruleName(r)} (disabled)` : ruleName(r)) },
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

  // Packs (enable/disable a whole pack) and rule-set versions (roll back): docs/manager.md.
  async function loadPacks() {
    const [packs, versions] = await Promise.all([get("/rules/packs"), get("/rules/versions")]);
    replace(packsBox, table(
      [
        { label: "Pack", class: "mono", key: "name" },
        { label: "Source", key: "source" },
        { label: "Version", key: "version" },
        { label: "Licence", key: "licence" },
        { label: "Enabled", render: (p) => `${p.enabled} / ${p.rules}` },
        {
          label: "Actions",
          render: (p) => (isAdmin ? h("div", { class: "actions" },
            h("button", { type: "button", class: "secondary", "aria-label": `Enable pack ${p.name}`, onclick: () => packState(p.name, true) }, "Enable"),
            h("button", { type: "button", class: "danger", "aria-label": `Disable pack ${p.name}`, onclick: () => packState(p.name, false) }, "Disable")) : ""),
        },
      ],
      packs || [],
      { caption: `${(packs || []).length} pack(s)`, empty: "No rule pack recorded." },
    ));
    replace(versionsBox, table(
      [
        { label: "Version", class: "mono", key: "version" },
        { label: "Time (UTC)", key: "time" },
        { label: "Rules", key: "rules" },
        { label: "sha256", class: "mono", render: (v) => String(v.sha256).slice(0, 16) },
        {
          label: "Actions",
          render: (v) => (isAdmin && versions && v.version !== versions[0].version ? h("button", { type: "button", class: "secondary", "aria-label": `Roll back to version ${v.version}`, onclick: () => rollback(v.version) }, "Roll back") : ""),
        },
      ],
      versions || [],
      { caption: "Rule sets, newest first (the first is current)", empty: "No version yet." },
    ));
  }

  async function packState(name, enabled) {
    try {
      const out = await post("/rules/state", { pack: name, enabled });
      toast(`Pack ${name}: ${out.changed.length} rule(s) ${enabled ? "enabled" : "disabled"}`);
      await Promise.all([load(), loadPacks()]);
    } catch (err) {
      toast(err.message, "error");
    }
  }

  async function rollback(version) {
    if (!(await confirmDialog("Roll back rules", `Make rule set ${version} current? Agents pick it up at their next update.`, "Roll back"))) return;
    try {
      await post("/rules/rollback", { version });
      toast(`Rules rolled back to version ${version}`);
      await Promise.all([load(), loadPacks()]);
    } catch (err) {
      toast(err.message, "error");
    }
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
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "rules-packs" }, h("h2", { id: "rules-packs" }, "Rule packs"), packsBox),
      h("section", { class: "panel", "aria-labelledby": "rules-versions" }, h("h2", { id: "rules-versions" }, "Rule set versions"), versionsBox)),
    h("section", { class: "panel", "aria-labelledby": "rule-editor-title" }, editorTitle,
      isAdmin ? null : h("p", { class: "muted" }, "Analysts can read rules but not change them."), editorForm),
  );
  const tuning = tuningPanels(isAdmin);
  root.append(...tuning.panels);
  editor.value = JSON.stringify(TEMPLATE, null, 2);
  await Promise.all([
    load(),
    tuning.load().catch((err) => replace(tuning.panels[0], errorBox(err))),
    loadPacks().catch((err) => replace(packsBox, errorBox(err))),
  ]);
}
