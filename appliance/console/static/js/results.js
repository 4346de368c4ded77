// Command results: state, timing, exit code, stdout/stderr, the JSON of built-in commands (hash,
// ls, processes...) as tables, and fetched files with their sha256 and a download. Text only.

import { fmtTime, h, modal, saveBlob, toDate } from "./dom.js";

const MAX_ROWS = 500;
const DONE = ["completed", "timeout", "cancelled", "failed"];

export const isPending = (c) => !DONE.includes(c.state);

/** Seconds from sent (or created) to completed, or "running …s". */
export function timing(c) {
  const r = c.result || {};
  const start = toDate(r.started) || toDate(c["sent-time"]) || toDate(c.created);
  const end = toDate(r.finished) || toDate(c["completed-time"]);
  if (start && end) return `${Math.max(0, (end - start) / 1000).toFixed(2)} s`;
  if (start && isPending(c)) return `running ${Math.round((Date.now() - start) / 1000)} s`;
  return "—";
}

function scalar(v) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** A JSON value as a table (array of objects), a key/value list (object) or text. */
export function jsonView(value) {
  if (Array.isArray(value) && value.length && value.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
    const keys = [...new Set(value.slice(0, MAX_ROWS).flatMap((x) => Object.keys(x)))];
    return h("div", { class: "json-table" },
      h("table", {}, h("thead", {}, h("tr", {}, keys.map((k) => h("th", { scope: "col" }, k)))),
        h("tbody", {}, value.slice(0, MAX_ROWS).map((x) => h("tr", {}, keys.map((k) => h("td", { class: "mono" }, scalar(x[k]))))))),
      value.length > MAX_ROWS ? h("p", { class: "muted" }, `${value.length - MAX_ROWS} more row(s) not shown`) : null);
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return h("dl", { class: "kv" }, Object.entries(value).flatMap(([k, v]) => [
      h("dt", {}, k),
      h("dd", { class: "mono" }, v && typeof v === "object" ? jsonView(v) : scalar(v)),
    ]));
  }
  return h("pre", { tabindex: "0" }, JSON.stringify(value, null, 2));
}

function b64Blob(data) {
  const bin = atob(data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes], { type: "application/octet-stream" });
}

function fetchedFiles(files) {
  return h("ul", { class: "fetched" }, files.map((f) => {
    const name = String(f.path || "file").split(/[\\/]/).pop();
    return h("li", {}, h("span", { class: "mono" }, f.path || "?"), " ",
      f.error ? h("span", { class: "error" }, f.error)
        : [h("span", { class: "mono muted" }, `sha256 ${f.sha256 || "?"} `),
          f.data ? h("button", { type: "button", class: "link", onclick: () => saveBlob(b64Blob(f.data), name) }, `Download ${name}`) : null]);
  }));
}

/** One line for the commands table: what the result is, at a glance. */
export function resultSummary(c) {
  const r = c.result;
  if (!r) return isPending(c) ? "waiting for the endpoint…" : "—";
  if (r.error) return `error: ${r.error}`.slice(0, 200);
  if (r.json !== undefined && r.json !== null) {
    const j = r.json;
    if (Array.isArray(j)) return `${j.length} item(s)`;
    if (j.hashes && j.hashes.sha256) return `sha256 ${j.hashes.sha256}`;
    return JSON.stringify(j).slice(0, 160);
  }
  const out = [r.stdout, r.stderr].filter(Boolean).join("\n");
  return out ? out.slice(0, 160) : `exit ${r.exit_code ?? "?"}`;
}

/** Every part of a result, for the result dialog. */
export function resultDetail(c) {
  const r = c.result || {};
  const part = (title, body) => h("section", { class: "result-part" }, h("h3", {}, title), body);
  return h("div", { class: "command-result" },
    h("dl", { class: "kv" },
      h("dt", {}, "Command"), h("dd", { class: "mono" }, [c.name, ...(c.args || [])].join(" ")),
      h("dt", {}, "State"), h("dd", { class: `state-${c.state}` }, c.state || "—"),
      h("dt", {}, "Queued"), h("dd", {}, fmtTime(c.created)),
      h("dt", {}, "Sent"), h("dd", {}, fmtTime(c["sent-time"])),
      h("dt", {}, "Completed"), h("dd", {}, fmtTime(c["completed-time"])),
      h("dt", {}, "Duration"), h("dd", {}, timing(c)),
      h("dt", {}, "Exit code"), h("dd", {}, scalar(r.exit_code)),
      h("dt", {}, "By"), h("dd", {}, c.issuer || "—")),
    r.error ? part("Error", h("pre", { class: "error", tabindex: "0" }, r.error)) : null,
    r.json !== undefined && r.json !== null ? part("Result (JSON)", jsonView(r.json)) : null,
    r.stdout ? part("Standard output", h("pre", { tabindex: "0" }, r.stdout)) : null,
    r.stderr ? part("Standard error", h("pre", { tabindex: "0" }, r.stderr)) : null,
    (r.fetched || []).length ? part("Fetched files", fetchedFiles(r.fetched)) : null);
}

export function showResult(c) {
  return modal(`Result of ${c.name}`, (close) => h("div", {}, resultDetail(c),
    h("p", {}, h("button", { type: "button", onclick: () => close() }, "Close"))));
}
