// The IR report viewer: one collapsible section per part (processes, tree, modules, drivers,
// connections, DNS, files, command outputs), rows rendered lazily (a section renders when opened,
// PAGE rows at a time), a search over every row. A multi-megabyte report opens at once because
// nothing but the summary is built up front. Every value is text.

import { h, replace } from "./dom.js";

const PAGE = 200;

const str = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
const pick = (...keys) => (r) => {
  for (const k of keys) if (r[k] !== undefined && r[k] !== null && r[k] !== "") return str(r[k]);
  return "";
};

// [key, title, rows(report) -> [object], columns: [label, fn(row)]]
const SECTIONS = [
  ["processes", "Processes", (r) => r.processes, [
    ["PID", pick("pid", "ProcessId")], ["Image", pick("image", "Image")],
    ["Command line", pick("command-line", "CommandLine", "cmdline")],
    ["Parent", pick("parent-image", "ParentImage", "ppid")], ["User", pick("user", "User")],
    ["GUID", pick("process-guid", "ProcessGuid", "guid")]]],
  ["tree", "Process tree (ancestors, process, descendants)", (r) => r.tree, [
    ["PID", pick("pid", "ProcessId")], ["Image", pick("image", "Image")],
    ["Command line", pick("command-line", "CommandLine")], ["GUID", pick("process-guid", "ProcessGuid", "guid")]]],
  ["modules", "Modules", (r) => r.modules, [
    ["Image", pick("image", "ImageLoaded", "path")], ["Hashes", pick("hashes", "Hashes", "sha256")],
    ["Signed", pick("signed", "Signed")], ["Signature", pick("signature", "Signature")]]],
  ["drivers", "Drivers", (r) => r.drivers, [
    ["Image", pick("image", "ImageLoaded", "path")], ["Hashes", pick("hashes", "Hashes")], ["Signature", pick("signature", "Signature")]]],
  ["connections", "Connections", (r) => r.connections, [
    ["PID", pick("pid")], ["Image", pick("image")], ["Proto", pick("proto")], ["Local", pick("laddr")],
    ["Remote", pick("raddr")], ["Status", pick("status")]]],
  ["dns", "DNS", (r) => flattenDns(r.dns), [["Process GUID", pick("guid")], ["IP", pick("ip")], ["Query", pick("qname")], ["Count", pick("n")]]],
  ["files", "Last files", (r) => flattenFiles(r.last_files), [["Process GUID", pick("guid")], ["Path", pick("path")]]],
  ["commands", "Command outputs", (r) => r.commands, [
    ["Command", (c) => [c.name, ...(c.args || [])].join(" ")], ["Error", pick("error")],
    ["Output", (c) => str(c.stdout || c.json || "").slice(0, 20000)], ["Stderr", pick("stderr")]]],
];

function flattenDns(dns) {
  const out = [];
  for (const [guid, ips] of Object.entries(dns || {})) {
    for (const [ip, names] of Object.entries(ips || {})) {
      if (names && typeof names === "object") for (const [qname, n] of Object.entries(names)) out.push({ guid, ip, qname, n });
      else out.push({ guid, ip, qname: "", n: names });
    }
  }
  return out;
}

function flattenFiles(files) {
  const out = [];
  for (const [guid, paths] of Object.entries(files || {})) for (const path of paths || []) out.push({ guid, path });
  return out;
}

function section([key, title, rowsOf, columns], report, state) {
  const raw = rowsOf(report);
  const rows = Array.isArray(raw) ? raw.map((x) => (x && typeof x === "object" ? x : { value: x })) : [];
  let haystack = null; // lowercase text of each row, built on the first search
  let matches = rows;
  let shown = 0;
  const count = h("span", { class: "muted" }, ` (${rows.length})`);
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more");
  const det = h("details", { class: "report-section", "data-section": key },
    h("summary", {}, h("strong", {}, title), count),
    h("table", {}, h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", { scope: "col" }, label)))), tbody),
    h("p", {}, more));
  const renderMore = () => {
    const frag = document.createDocumentFragment();
    for (const r of matches.slice(shown, shown + PAGE)) {
      frag.append(h("tr", {}, columns.map(([, fn]) => h("td", { class: "mono" }, fn(r).slice(0, 4000)))));
    }
    tbody.append(frag);
    shown = Math.min(matches.length, shown + PAGE);
    more.hidden = shown >= matches.length;
    more.textContent = `Show more (${matches.length - shown} left)`;
  };
  const reset = () => {
    tbody.replaceChildren();
    shown = 0;
    if (det.open) renderMore();
  };
  more.addEventListener("click", renderMore);
  det.addEventListener("toggle", () => { if (det.open && !shown) renderMore(); });
  state.filters.push((needle) => {
    if (!needle) matches = rows;
    else {
      if (!haystack) haystack = rows.map((r) => JSON.stringify(r).toLowerCase());
      matches = rows.filter((_, i) => haystack[i].includes(needle));
    }
    count.textContent = needle ? ` (${matches.length} of ${rows.length} match)` : ` (${rows.length})`;
    if (needle && matches.length && !det.open) det.open = true;
    reset();
    return matches.length;
  });
  return det;
}

/** Render a report (parsed JSON object) into a node with a search field. */
export function reportView(report) {
  const state = { filters: [] };
  const meta = h("dl", { class: "kv" },
    h("dt", {}, "Host"), h("dd", {}, str(report.hostname) || "—"),
    h("dt", {}, "Collected"), h("dd", {}, `${str(report["start-timestamp"]) || "?"} → ${str(report["stop-timestamp"]) || "?"}`));
  const sections = SECTIONS.map((s) => section(s, report, state));
  const first = sections.find((d) => !d.querySelector("summary span").textContent.includes("(0)"));
  if (first) first.open = true; // the toggle event renders its first rows
  const input = h("input", { type: "search", name: "report-search", placeholder: "image, IP, domain, hash…", autocomplete: "off" });
  const label = h("label", {}, "Search the report ", input);
  const status = h("p", { role: "status", class: "report-status" });
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const needle = input.value.trim().toLowerCase();
      const total = state.filters.reduce((n, f) => n + f(needle), 0);
      status.textContent = needle ? `${total} row(s) match “${input.value.trim()}”` : "";
    }, 150);
  });
  const rawBox = h("div");
  const raw = h("details", {}, h("summary", {}, "Raw JSON"), rawBox);
  raw.addEventListener("toggle", () => {
    if (raw.open && !rawBox.firstChild) replace(rawBox, h("pre", { tabindex: "0", "aria-label": "IR report JSON" }, JSON.stringify(report, null, 1)));
  });
  return h("div", { class: "ir-report" }, meta, label, status, sections, raw);
}
