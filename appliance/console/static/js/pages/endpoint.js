// Endpoint detail: facts, settings, actions, detections, timeline, commands, artifacts, IR reports.

import { actionButtons } from "../actions.js";
import { apiUrl, get, post } from "../api.js";
import { endpointOs, rulesState, searchEvents, systemFacts } from "../data.js";
import { errorBox, field, fmtAgo, fmtTime, h, modal, replace, saveBlob, select, table, toast } from "../dom.js";
import { reportView } from "../report.js";
import { isPending, resultSummary, showResult, timing } from "../results.js";
import { detectionColumns, eventChannel, eventDetail, eventId, eventSubject, eventTime, signatures } from "../events.js";

/** The agent's latest loss/degradation/budget counters (health event 9010). */
function countersView(c) {
  if (!c) return h("p", { class: "muted" }, "The agent has not reported its counters yet.");
  const sources = Object.entries(c.sources || {}).map(([name, s]) => ({ name, ...s }));
  const pairs = (obj) => Object.entries(obj || {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "none";
  const budget = (c.actions && c.actions.budget) || {};
  const queue = c.queue || {};
  return h("div", {},
    table(
      ["name", "events", "lost", "shed", "drops", "incomplete", "degraded"].map((k) => ({
        label: k === "name" ? "Source" : k[0].toUpperCase() + k.slice(1),
        class: k === "name" ? "mono" : "",
        render: (s) => String(s[k] ?? 0),
      })),
      sources,
      { caption: `Events per source (reported ${fmtAgo(c.time)})`, empty: "No source." },
    ),
    h("dl", { class: "kv" },
      h("dt", {}, "Actions dropped"), h("dd", {}, pairs(c.actions && c.actions.dropped_actions)),
      h("dt", {}, "Actions skipped"), h("dd", {}, pairs(c.actions && c.actions.skipped)),
      h("dt", {}, "Evidence bytes (hour / disk)"), h("dd", {}, `${budget.bytes_last_hour ?? 0} / ${budget.bytes_on_disk ?? 0}`),
      h("dt", {}, "Rate limited"), h("dd", {}, pairs(budget.rate_limited)),
      h("dt", {}, "Over quota"), h("dd", {}, pairs(budget.over_quota)),
      h("dt", {}, "Suppressed"), h("dd", {}, pairs(c.suppressed)),
      h("dt", {}, "Queue"), h("dd", {}, `disk ${queue.disk_state || "ok"}, ${queue.disk_dropped ?? 0} dropped on a full disk, ${queue.evicted ?? 0} evicted`),
      h("dt", {}, "Throttled"), h("dd", {}, c.throttled ? "yes (CPU limit)" : "no"),
    ));
}

async function settle(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (err) {
    return { ok: false, error: err };
  }
}

function showEvent(e) {
  modal("Event detail", (close) => h("div", {}, eventDetail(e), h("p", {}, h("button", { type: "button", onclick: () => close() }, "Close"))));
}

function artifactPath(uuid, art, name) {
  const base = art["base-url"] || `/endpoints/${uuid}/artifacts/${art["process-guid"]}/${art["event-hash"]}/`;
  return `${base}${encodeURIComponent(name)}`;
}

async function download(uuid, art, file) {
  const url = apiUrl(artifactPath(uuid, art, file.name), { raw: "true" });
  try {
    const resp = await fetch(url, { credentials: "same-origin" });
    if (!resp.ok) throw new Error(`download failed: HTTP ${resp.status}`);
    saveBlob(await resp.blob(), file.name);
  } catch (err) {
    toast(err.message, "error");
  }
}

async function showReport(uuid, art) {
  const resp = await fetch(apiUrl(artifactPath(uuid, art, "report.json"), { raw: "true" }), { credentials: "same-origin" });
  if (!resp.ok) throw new Error(`report download failed: HTTP ${resp.status}`);
  const body = await resp.text();
  let view;
  try {
    const parsed = JSON.parse(body);
    view = parsed && typeof parsed === "object" && !Array.isArray(parsed) ? reportView(parsed) : h("pre", { tabindex: "0" }, body.slice(0, 1_000_000));
  } catch {
    view = h("pre", { tabindex: "0", "aria-label": "IR report (not JSON)" }, body.slice(0, 1_000_000));
  }
  modal("IR report", (close) => h("div", {}, view, h("button", { type: "button", onclick: () => close() }, "Close")));
}

function artifactsTable(uuid, arts) {
  return table(
    [
      { label: "Created (UTC)", class: "mono", render: (a) => fmtTime(a.creation || a.created) },
      { label: "Process GUID", class: "mono", render: (a) => a["process-guid"] },
      { label: "Event hash", class: "mono", render: (a) => String(a["event-hash"] || "").slice(0, 16) },
      {
        label: "Files",
        render: (a) => h("ul", {}, (a.files || []).map((f) => h("li", {},
          h("button", { type: "button", class: "link", onclick: () => download(uuid, a, f) }, `Download ${f.name}`), ` (${f.size ?? "?"} bytes) `, h("span", { class: "mono muted" }, `sha256 ${f.sha256 || "?"}`)))),
      },
      {
        label: "IR report",
        render: (a) => ((a.files || []).some((f) => f.name === "report.json")
          ? h("button", { type: "button", class: "link", onclick: () => showReport(uuid, a).catch((err) => toast(err.message, "error")) }, "Open report")
          : "—"),
      },
    ],
    arts,
    { empty: "No artifact uploaded." },
  );
}

function commandsTable(cmds) {
  return table(
    [
      { label: "Queued (UTC)", class: "mono", render: (c) => fmtTime(c.created) },
      { label: "Command", class: "mono", render: (c) => [c.name, ...(c.args || [])].join(" ") },
      { label: "State", render: (c) => h("span", { class: `state-${c.state}` }, c.state || (c.completed ? "completed" : c.sent ? "sent" : "queued")) },
      { label: "Time", render: timing },
      { label: "By", key: "issuer" },
      { label: "Output", class: "mono", render: resultSummary },
      {
        label: "Result",
        render: (c) => (c.result || !isPending(c)
          ? h("button", { type: "button", class: "link", "aria-label": `Show the result of ${c.name} ${(c.args || []).join(" ")}`, onclick: () => showResult(c) }, "Show")
          : "—"),
      },
    ],
    cmds,
    { empty: "No command sent yet." },
  );
}

function timelineList(events) {
  return events.map((e) => h("li", {},
    `${fmtTime(eventTime(e))}  ${eventChannel(e).split("/")[0]} ${eventId(e) ?? ""}  `,
    signatures(e).length ? h("strong", {}, `[${signatures(e).join(", ")}] `) : null,
    eventSubject(e).slice(0, 160), " ",
    h("button", { type: "button", class: "link", onclick: () => showEvent(e) }, "Show")));
}

/** The endpoint's timeline: the last hour at first, then filters (range, query, detections). */
function timeline(uuid, first) {
  const last = select("timeline-last", [["15m", "last 15 minutes"], ["1h", "last hour"], ["24h", "last 24 hours"], ["7d", "last 7 days"]], "1h");
  const q = h("input", { type: "search", name: "timeline-q", autocomplete: "off", placeholder: "EventID:3 OR Image:*powershell*" });
  const dets = h("input", { type: "checkbox", name: "timeline-detections" });
  const list = h("ol", { class: "timeline mono" });
  const status = h("p", { role: "status", id: "timeline-status", class: "muted" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  let cursor = "";
  let shown = 0;
  if (first.ok) {
    const events = (first.value || []).slice(0, 200);
    list.append(...timelineList(events));
    shown = events.length;
    status.textContent = `${shown} event(s), last hour`;
  } else {
    replace(status, errorBox(first.error));
  }
  async function run(append) {
    try {
      const page = await searchEvents({ q: q.value.trim(), last: last.value, endpoint: uuid, detections: dets.checked, limit: 200, cursor: append ? cursor : "" });
      if (!append) { list.replaceChildren(); shown = 0; }
      list.append(...timelineList(page.events));
      shown += page.events.length;
      cursor = page.next;
      more.hidden = !cursor;
      status.textContent = `${shown} event(s)${page.total ? ` of ${page.total}` : ""}`;
    } catch (err) {
      replace(status, errorBox(err));
    }
  }
  const form = h("form", { class: "inline", role: "search", "aria-label": "Filter the timeline" },
    field("Range", last), field("Timeline query", q), h("label", {}, dets, " detections only"), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); run(false); });
  more.addEventListener("click", () => run(true));
  return h("div", {}, form, status, list, h("p", {}, more));
}

function settingsForm(ep, reload) {
  const group = h("input", { type: "text", name: "group", value: ep.group || "" });
  const crit = h("input", { type: "number", name: "criticality", min: "0", max: "10", value: String(ep.criticality ?? 0) });
  const form = h("form", { class: "inline", "aria-label": "Endpoint settings" }, field("Group", group), field("Criticality (0–10)", crit), h("button", { type: "submit" }, "Save"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await post(`/endpoints/${ep.uuid}`, { group: group.value, criticality: Number(crit.value) || 0 });
      toast("Endpoint saved");
      reload();
    } catch (err) {
      toast(err.message, "error");
    }
  });
  return form;
}

export async function render(root, ctx) {
  const uuid = ctx.match[1];
  const isAdmin = ctx.session.role === "admin";
  const reload = () => window.dispatchEvent(new HashChangeEvent("hashchange"));
  const [epR, detR, logR, artR, cmdR, repR] = await Promise.all([
    settle(get(`/endpoints/${uuid}`)),
    settle(get(`/endpoints/${uuid}/detections`, { last: "7d", limit: 200 })),
    settle(get(`/endpoints/${uuid}/logs`, { last: "1h", limit: 200 })),
    settle(get(`/endpoints/${uuid}/artifacts`)),
    settle(get(`/endpoints/${uuid}/commands`)),
    settle(get(`/endpoints/${uuid}/report`)),
  ]);
  if (!epR.ok) throw epR.error;
  const ep = epR.value;
  const report = repR.ok && repR.value ? repR.value : {};
  const section = (id, title, body) => h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), body);
  const listOf = (r) => (r.ok ? r.value || [] : []);
  const cmds = listOf(cmdR);
  const cmdsBox = h("div", { "aria-live": "polite" }, cmdR.ok ? commandsTable(cmds) : errorBox(cmdR.error));
  const pending = (list) => list.some(isPending);

  replace(
    root,
    h("h1", {}, `Endpoint ${ep.hostname || ep.uuid}`),
    h("div", { class: "grid" },
      section("ep-facts", "Facts", h("dl", { class: "kv" },
        h("dt", {}, "UUID"), h("dd", { class: "mono" }, ep.uuid),
        h("dt", {}, "Status"), h("dd", {}, ep.status || "—"),
        h("dt", {}, "IP"), h("dd", { class: "mono" }, ep.ip || "—"),
        h("dt", {}, "System"), h("dd", {}, endpointOs(ep) || "—"),
        systemFacts(ep).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        h("dt", {}, "Last seen"), h("dd", {}, `${fmtAgo(ep["last-connection"])} (${fmtTime(ep["last-connection"])})`),
        h("dt", {}, "Last detection"), h("dd", {}, fmtTime(ep["last-detection"])),
        h("dt", {}, "Score"), h("dd", {}, Number(ep.score ?? report.score ?? 0).toFixed(1)),
        h("dt", {}, "Rules"), h("dd", {}, rulesState(ep)),
        h("dt", {}, "Rules hash"), h("dd", { class: "mono" }, (ep.rules && ep.rules.sha256) || "—"),
        h("dt", {}, "Rules updated"), h("dd", {}, ep.rules ? fmtTime(ep.rules.updated) : "—"),
        h("dt", {}, "ATT&CK techniques"), h("dd", { class: "mono" }, (report.techniques || []).join(", ") || "—"),
        h("dt", {}, "Tactics"), h("dd", {}, (report.tactics || []).join(", ") || "—"),
      )),
      section("ep-settings", "Settings and actions", h("div", {},
        isAdmin ? settingsForm(ep, reload) : h("p", { class: "muted" }, "Analysts cannot change endpoints."),
        actionButtons(ep, reload, { isAdmin }))),
    ),
    section("ep-health", "Agent health: losses and budgets", countersView(ep["agent-counters"])),
    section("ep-dets", "Detections (7 days)", detR.ok ? table(detectionColumns(showEvent), detR.value || []) : errorBox(detR.error)),
    section("ep-timeline", "Timeline", timeline(uuid, logR)),
    section("ep-cmds", "Commands", cmdsBox),
    section("ep-arts", "Artifacts and IR reports", artR.ok ? artifactsTable(uuid, listOf(artR)) : errorBox(artR.error)),
  );
  // Refresh only the command list while a command is pending (focus stays where it is).
  let last = cmds;
  const timer = setInterval(async () => {
    if (!ctx.isCurrent() || !pending(last)) return;
    try {
      last = (await get(`/endpoints/${uuid}/commands`)) || [];
      replace(cmdsBox, commandsTable(last));
    } catch { /* keep the previous list */ }
  }, 2000);
  window.addEventListener("heron:command-queued", onQueued);
  function onQueued(ev) {
    if (ev.detail === uuid) last = [{ state: "queued" }];
  }
  return () => {
    clearInterval(timer);
    window.removeEventListener("heron:command-queued", onQueued);
  };
}
