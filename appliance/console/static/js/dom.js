// DOM helpers: element builder (text nodes only, no HTML parsing), tables, forms, dialogs, toasts.

let uid = 0;

/** Create an element: h("button", {class: "x", onclick: fn}, "text", child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Remove every child of `el` and append the new ones. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function nextId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form control: field("Query", h("input", {...})). */
export function field(label, control, hint) {
  const id = control.id || nextId();
  control.id = id;
  const parts = [h("label", { for: id }, label), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, class: "muted" }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** A select with [value, label] options. */
export function select(name, options, value = "") {
  return h(
    "select",
    { name },
    options.map(([v, label]) => h("option", { value: v, selected: String(v) === String(value) }, label)),
  );
}

/**
 * A data table. columns: [{label, render(row) -> node|string, class}].
 * Rows are rendered with textContent only; render functions may return elements (links, buttons).
 */
export function table(columns, rows, { caption, empty = "Nothing to show.", rowAttrs } = {}) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label))));
  const body = h("tbody");
  for (const row of rows) body.append(tableRow(columns, row, rowAttrs));
  if (!rows.length) {
    body.append(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
  }
  return h("table", {}, caption ? h("caption", {}, caption) : null, head, body);
}

export function tableRow(columns, row, rowAttrs) {
  return h(
    "tr",
    rowAttrs ? rowAttrs(row) : {},
    columns.map((c) => h("td", { class: c.class }, c.render ? c.render(row) : row[c.key] ?? "")),
  );
}

/** Show a transient message in the polite live region. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/** An inline error paragraph announced to screen readers. */
export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, String(err && err.message ? err.message : err));
}

/**
 * A modal dialog (native <dialog>: focus is trapped, Escape closes it).
 * `build(close)` returns the dialog body; resolves when closed.
 */
export function modal(title, build) {
  return new Promise((resolve) => {
    const titleId = nextId("dlg");
    const dlg = h("dialog", { "aria-labelledby": titleId });
    const close = (value) => {
      dlg.close();
      resolve(value);
    };
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(undefined);
    });
    dlg.append(h("h2", { id: titleId }, title), build(close));
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Ask for confirmation with a modal (the Cancel button gets focus first). */
export function confirmDialog(title, message, action = "Confirm") {
  return modal(title, (close) =>
    h(
      "div",
      {},
      h("p", {}, message),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", autofocus: true, onclick: () => close(false) }, "Cancel"),
        h("button", { type: "button", class: "danger", onclick: () => close(true) }, action),
      ),
    ),
  ).then((v) => v === true);
}

/** Parse a timestamp (RFC 3339 string or unix seconds) into a Date, or null. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(d.getTime()) || d.getUTCFullYear() < 1971 ? null : d;
}

export function fmtTime(value) {
  const d = toDate(value);
  return d ? d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
}

export function fmtAgo(value) {
  const d = toDate(value);
  if (!d) return "never";
  const s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** Severity band name for a criticality 0–10 (low 1–4, medium 5–7, high 8–9, critical 10). */
export function severity(crit) {
  const c = Number(crit) || 0;
  if (c >= 10) return "critical";
  if (c >= 8) return "high";
  if (c >= 5) return "medium";
  return "low";
}

export function severityBadge(crit) {
  const band = severity(crit);
  return h("span", { class: `sev-${band}` }, `${crit ?? 0} ${band}`);
}

/** Download a string or blob as a file (used for artifacts). */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
