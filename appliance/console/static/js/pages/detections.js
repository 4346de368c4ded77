// Detections: the triage queue (/alerts, cursor paging) with live additions over SSE, bulk
// actions, and an alert dialog (event, status, assignee, comments, false positive).

import { get, post, subscribe } from "../api.js";
import { searchEvents } from "../data.js";
import { errorBox, field, fmtTime, h, modal, replace, select, severityBadge, toast } from "../dom.js";
import { isPending, resultDetail } from "../results.js";
import { processTree } from "../tree.js";
import { criticality, eventDetail, eventEndpoint, eventHash, eventTime, signatures } from "../events.js";

const PAGE = 100;
export const STATUSES = [["new", "New"], ["in_progress", "In progress"], ["closed", "Closed"], ["false_positive", "False positive"]];
const STATUS_LABEL = Object.fromEntries(STATUSES);

const alertPath = (a) => `/alerts/${encodeURIComponent(a.endpoint)}/${encodeURIComponent(a.event_hash)}`;

/** An alert row built from a live SSE detection event (same shape as /alerts rows). */
function fromEvent(e) {
  const ep = eventEndpoint(e);
  const t = Date.parse(eventTime(e));
  return {
    endpoint: ep.uuid, hostname: ep.hostname, event_hash: eventHash(e), ts: Number.isNaN(t) ? 0 : t / 1000,
    signatures: signatures(e), criticality: criticality(e), status: "new", assignee: "", comments: 0,
  };
}

function commentList(comments) {
  if (!comments.length) return h("p", { class: "muted" }, "No comment yet.");
  return h("ol", { class: "comments" }, comments.map((c) =>
    h("li", {}, h("span", { class: "muted" }, `${fmtTime(c.ts)} · ${c.author}: `), c.text)));
}

/** "Hash the image": queue the agent's built-in `hash` and follow the command until it answers. */
function hashAction(alert, event, session) {
  const image = event && event.Event && event.Event.EventData && event.Event.EventData.Image;
  if (!image) return null;
  const box = h("div", { class: "hash-result", "aria-live": "polite" });
  let timer = null;
  async function run() {
    try {
      const res = await post(`/endpoints/${alert.endpoint}/command`, { name: "hash", args: [String(image)] });
      const id = res.command.id;
      replace(box, h("p", { role: "status" }, "hash queued: waiting for the endpoint…"));
      const poll = async () => {
        if (!box.isConnected) return;
        try {
          const c = await get(`/endpoints/${alert.endpoint}/commands/${id}`);
          replace(box, resultDetail(c));
          if (isPending(c)) timer = setTimeout(poll, 1000);
        } catch (err) {
          replace(box, errorBox(err));
        }
      };
      poll();
    } catch (err) {
      replace(box, errorBox(err));
    }
  }
  const isAdmin = session.role === "admin";
  return h("section", { class: "response" }, h("h3", {}, "Response"),
    h("p", {}, h("button", { type: "button", disabled: !isAdmin, onclick: () => { clearTimeout(timer); run(); } }, "Hash the image"), " ",
      h("span", { class: "mono" }, String(image)), isAdmin ? null : h("span", { class: "muted" }, " (admins only)")), box);
}

const MATCHES = [["image", "Image", "Image"], ["parent", "ParentImage", "Parent image"], ["command_line", "CommandLine", "Command line"], ["user", "User", "User"]];

/** "Suppress": a suppression per rule of this alert, on chosen fields of its event; tried on
 * the stored detections of the last 30 days before it is saved (then the alert is closed as a
 * false positive and the same event no longer alerts). */
function suppressAction(alert, event, onSaved) {
  const data = (event && event.Event && event.Event.EventData) || {};
  if (!event) return null;
  const rules = alert.signatures.map((sig) => h("input", { type: "checkbox", name: "suppress-rule", value: sig, checked: true }));
  const matches = MATCHES.map(([key, fieldName]) => h("input", {
    type: "checkbox", name: "suppress-match", value: key, checked: key === "image" && !!data[fieldName], disabled: !data[fieldName],
  }));
  const out = h("div", { class: "suppress-out", "aria-live": "polite" });
  const body = (extra) => ({
    rules: rules.filter((r) => r.checked).map((r) => r.value),
    match: matches.filter((m) => m.checked).map((m) => m.value),
    ...extra,
  });
  async function tryIt() {
    try {
      const res = await post(`${alertPath(alert)}/suppress`, body({ dry_run: true }));
      replace(out, h("ul", {}, res.tests.map((t, i) => h("li", { role: "status" },
        `${res.suppressions[i].rule}: would silence ${t.matched} of ${t.scanned} stored detection(s) of the last 30 days${t.truncated ? " (more not scanned)" : ""}.`))));
    } catch (err) {
      replace(out, errorBox(err));
    }
  }
  async function save() {
    try {
      const res = await post(`${alertPath(alert)}/suppress`, body({ close: true }));
      replace(out, h("p", { role: "status" }, `Suppressed: ${res.suppressions.map((s) => s.id).join(", ")}; alert closed as a false positive.`));
      onSaved(res.alert);
    } catch (err) {
      replace(out, errorBox(err));
    }
  }
  return h("section", { class: "suppress" }, h("h3", {}, "Suppress"),
    h("fieldset", {}, h("legend", {}, "Rules"), rules.map((r) => h("label", {}, r, " ", r.value))),
    h("fieldset", {}, h("legend", {}, "When the event has the same"), matches.map((m, i) =>
      h("label", {}, m, " ", MATCHES[i][2], h("span", { class: "mono muted" }, ` ${data[MATCHES[i][1]] || "(none)"}`)))),
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: tryIt }, "Try on stored events"), " ",
      h("button", { type: "button", onclick: save }, "Suppress and close")), out);
}

/** The alert dialog; resolves when closed. `onChange(alert)` gets every saved change. */
export async function openAlert(ref, session, onChange = () => {}) {
  const [alert, found] = await Promise.all([
    get(alertPath(ref)),
    searchEvents({ q: `EventHash:${ref.event_hash}`, endpoint: ref.endpoint, detections: true, limit: 1 }).catch(() => ({ events: [] })),
  ]);
  const event = found.events[0] || null;
  const tree = h("div", { class: "tree-box", "aria-live": "polite" }, event ? h("p", { class: "muted" }, "Loading the process tree…") : h("p", { class: "muted" }, "No stored event: no process tree."));
  if (event) processTree(event, ref.endpoint).then((t) => replace(tree, t), (err) => replace(tree, errorBox(err)));
  return modal(`Alert: ${alert.signatures.join(", ")}`, (close) => {
    const out = h("div", { "aria-live": "polite", class: "alert-out" });
    const status = select("status", STATUSES, alert.status);
    const assignee = h("input", { type: "text", name: "assignee", value: alert.assignee, autocomplete: "off", placeholder: "user identifier" });
    const comment = h("textarea", { name: "comment", rows: "3", maxlength: "8192" });
    const comments = h("div", { class: "comment-box" }, commentList(alert.comments));
    const head = h("dl", { class: "kv" });
    const showHead = (a) => replace(head,
      h("dt", {}, "Status"), h("dd", { class: `status-${a.status}` }, STATUS_LABEL[a.status] || a.status),
      h("dt", {}, "Assignee"), h("dd", {}, a.assignee || "—"),
      h("dt", {}, "Endpoint"), h("dd", {}, h("a", { href: `#/endpoints/${a.endpoint}` }, a.hostname || a.endpoint)),
      h("dt", {}, "Criticality"), h("dd", {}, severityBadge(a.criticality)),
      h("dt", {}, "ATT&CK"), h("dd", { class: "mono" }, (a.attack || []).join(" ") || "—"));
    showHead(alert);
    async function save(change) {
      try {
        const updated = await post(alertPath(alert), change);
        Object.assign(alert, updated);
        showHead(updated);
        status.value = updated.status;
        assignee.value = updated.assignee;
        comment.value = "";
        replace(comments, commentList(updated.comments));
        const fp = updated.misp_false_positive || [];
        replace(out, h("p", { role: "status" }, fp.length ? `Saved; false positive sent to MISP for ${fp.join(", ")}.` : "Saved."));
        onChange(updated);
      } catch (err) {
        replace(out, errorBox(err));
      }
    }
    const form = h("form", { class: "triage", "aria-label": "Triage" },
      field("Alert status", status), field("Assign to", assignee), field("Comment", comment),
      h("div", { class: "actions" },
        h("button", { type: "submit" }, "Save"),
        h("button", { type: "button", class: "secondary", onclick: () => { assignee.value = session.name; } }, "Assign to me"),
        h("button", { type: "button", class: "secondary", onclick: () => save({ status: "false_positive", comment: comment.value || undefined }) }, "Mark false positive")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const change = {};
      if (status.value !== alert.status) change.status = status.value;
      if (assignee.value.trim() !== alert.assignee) change.assignee = assignee.value.trim();
      if (comment.value.trim()) change.comment = comment.value;
      if (!Object.keys(change).length) return replace(out, h("p", { role: "status" }, "Nothing changed."));
      return save(change);
    });
    return h("div", { class: "alert-dialog" }, head, form, out,
      h("h3", {}, "Process tree"), tree,
      h("h3", {}, "Comments"), comments, hashAction(alert, event, session),
      suppressAction(alert, event, (updated) => { Object.assign(alert, updated); showHead(updated); status.value = updated.status; onChange(updated); }),
      event ? eventDetail(event) : h("p", { class: "muted" }, "The stored event is not searchable (yet)."),
      h("p", {}, h("button", { type: "button", onclick: () => close() }, "Close")));
  });
}

export async function render(root, ctx) {
  const p = ctx.params;
  const status = select("status", [["open", "Open (new + in progress)"], ...STATUSES, ["all", "All"]], p.get("status") || "open");
  const sort = select("sort", [["newest", "Newest first"], ["critical", "Most critical first"]], p.get("sort") || "newest");
  const endpoint = h("input", { type: "text", name: "endpoint", value: p.get("endpoint") || "", placeholder: "endpoint uuid", autocomplete: "off" });
  const rule = h("input", { type: "text", name: "signature", value: p.get("signature") || "", autocomplete: "off" });
  const minCrit = h("input", { type: "number", name: "min_criticality", min: "0", max: "10", value: p.get("min_criticality") || "0" });
  const assigned = h("input", { type: "text", name: "assignee", value: p.get("assignee") || "", autocomplete: "off", placeholder: "anyone" });
  const liveState = h("span", { class: "live", id: "live-state" }, "live: connecting");
  const announce = h("p", { class: "sr-only", "aria-live": "polite" });
  const summary = h("p", { id: "alerts-summary", role: "status" });
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  const bulkStatus = select("bulk-status", STATUSES, "in_progress");
  const bulkOut = h("span", { role: "status" });
  const selectAll = h("input", { type: "checkbox", "aria-label": "Select every shown alert" });
  let next = null;
  let total = 0;
  let shown = 0;
  let close = null;

  const filter = () => ({
    status: status.value, sort: sort.value, endpoint: endpoint.value.trim(), signature: rule.value.trim(),
    min_criticality: minCrit.value === "0" ? "" : minCrit.value, assignee: assigned.value.trim() || undefined,
  });
  const showSummary = () => { summary.textContent = `${shown} of ${total} alert(s) shown`; };

  function row(a, live = false) {
    const box = h("input", { type: "checkbox", class: "pick", "aria-label": `Select ${a.signatures.join(", ")} on ${a.hostname || a.endpoint}` });
    box.alert = a;
    const tr = h("tr", { class: live ? "new" : undefined, "data-live": live ? "1" : undefined, "data-hash": a.event_hash, "data-status": a.status },
      h("td", {}, box),
      h("td", { class: "mono" }, fmtTime(a.ts)),
      h("td", {}, a.endpoint ? h("a", { href: `#/endpoints/${a.endpoint}` }, a.hostname || a.endpoint) : a.hostname),
      h("td", {}, a.signatures.join(", ")),
      h("td", { class: "mono" }, (a.attack || []).join(" ") || "—"),
      h("td", {}, severityBadge(a.criticality)),
      h("td", { class: `status-${a.status}` }, STATUS_LABEL[a.status] || a.status),
      h("td", {}, a.assignee || "—"),
      h("td", {}, String(a.comments || 0)),
      h("td", {}, h("button", { type: "button", class: "link", "aria-label": `Open alert ${a.signatures.join(", ")} on ${a.hostname}`, onclick: () => show(a) }, "Open")));
    return tr;
  }

  async function show(a) {
    try {
      await openAlert(a, ctx.session, () => {});
    } catch (err) {
      toast(err.message, "error");
    }
    if (ctx.isCurrent()) load().catch((err) => toast(err.message, "error"));
  }

  async function load(append = false) {
    const page = await get("/alerts", { ...filter(), limit: PAGE, cursor: append ? next : "" });
    if (!append) {
      tbody.replaceChildren();
      shown = 0;
      selectAll.checked = false;
    }
    const frag = document.createDocumentFragment();
    for (const a of page.alerts) frag.append(row(a));
    tbody.append(frag);
    shown += page.alerts.length;
    total = page.total;
    next = page.next;
    more.hidden = !next;
    if (!shown) tbody.append(h("tr", {}, h("td", { colspan: "10", class: "muted" }, "No alert in this view.")));
    showSummary();
  }

  const wanted = (a) => {
    if (!["open", "new", "all"].includes(status.value)) return false;
    if (endpoint.value && a.endpoint !== endpoint.value.trim()) return false;
    if (rule.value && !a.signatures.includes(rule.value.trim())) return false;
    if (assigned.value.trim()) return false;
    return a.criticality >= (Number(minCrit.value) || 0);
  };

  function addLive(e) {
    const a = fromEvent(e);
    if (!wanted(a) || sort.value !== "newest") return;
    const placeholder = tbody.querySelector("td[colspan]");
    if (placeholder) placeholder.parentElement.remove();
    tbody.prepend(row(a, true));
    shown += 1;
    total += 1;
    showSummary();
    announce.textContent = `New detection: ${a.signatures.join(", ")} on ${a.hostname}`;
  }

  function connect() {
    if (close) close();
    const f = filter();
    close = subscribe("/stream/detections", { endpoint: f.endpoint, signature: f.signature, min_criticality: f.min_criticality }, addLive, (open) => {
      liveState.classList.toggle("on", open);
      liveState.textContent = open ? "live: connected" : "live: reconnecting";
    });
  }

  async function bulk(change) {
    const picked = [...tbody.querySelectorAll("input.pick:checked")].map((b) => b.alert);
    if (!picked.length) return replace(bulkOut, "Select alerts first.");
    try {
      const res = await post("/alerts/bulk", { alerts: picked.map((a) => ({ endpoint: a.endpoint, event_hash: a.event_hash })), ...change });
      replace(bulkOut, `${res.changed} alert(s) changed.`);
      toast(`${res.changed} alert(s) changed`);
      await load();
    } catch (err) {
      replace(bulkOut, errorBox(err));
    }
    return undefined;
  }

  selectAll.addEventListener("change", () => {
    for (const b of tbody.querySelectorAll("input.pick")) b.checked = selectAll.checked;
  });
  more.addEventListener("click", () => load(true).catch((err) => toast(err.message, "error")));

  const form = h("form", { class: "inline", role: "search", "aria-label": "Filter alerts" },
    field("Status", status), field("Order", sort), field("Endpoint", endpoint), field("Rule", rule),
    field("Minimum criticality", minCrit), field("Assignee", assigned), h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await load();
      connect();
    } catch (err) {
      replace(summary, errorBox(err));
    }
  });
  const bulkBar = h("div", { class: "inline bulk", role: "group", "aria-label": "Bulk actions" },
    field("Set status of selected", bulkStatus),
    h("button", { type: "button", onclick: () => bulk({ status: bulkStatus.value }) }, "Apply to selected"),
    h("button", { type: "button", class: "secondary", onclick: () => bulk({ assignee: ctx.session.name }) }, "Assign selected to me"),
    bulkOut);
  const head = h("thead", {}, h("tr", {}, h("th", { scope: "col" }, selectAll),
    ["Time (UTC)", "Endpoint", "Rules", "ATT&CK", "Criticality", "Status", "Assignee", "Comments", "Alert"].map((l) => h("th", { scope: "col" }, l))));
  const tbl = h("table", { class: "alerts" }, h("caption", {}, "Alerts (live detections are highlighted)"), head, tbody);
  replace(root, h("h1", {}, "Detections"), form, h("p", {}, liveState), announce, bulkBar, summary, tbl, h("p", {}, more));
  try {
    await load();
  } catch (err) {
    replace(summary, errorBox(err));
  }
  connect();
  return () => {
    if (close) close();
  };
}
