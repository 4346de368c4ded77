// Fleet data fetchers shared by several pages (one place that knows the admin API routes).

import { get } from "./api.js";
import { toDate } from "./dom.js";

export const ONLINE_WINDOW_MS = 5 * 60 * 1000;

export function isOnline(ep) {
  const seen = toDate(ep["last-connection"]);
  return Boolean(seen && Date.now() - seen.getTime() < ONLINE_WINDOW_MS);
}

/** Operating system line from the agent's system information (`os.product` or name + version). */
export function endpointOs(ep) {
  const info = ep["system-info"] || {};
  const os = info.os || info.OS || {};
  if (typeof os === "string") return os;
  const main = os.product || [os.name, os.version].filter(Boolean).join(" ");
  return [main, os.build ? `build ${os.build}` : ""].filter(Boolean).join(", ");
}

/** The endpoint's rule state as one line ("412 rules, ok" / "0 rules, no-rules" / "not reported"). */
export function rulesState(ep) {
  const r = ep.rules;
  if (!r) return "not reported";
  return `${r.count} rules, ${r.status}`;
}

/** Hardware and agent facts from the system information, as [label, value] pairs. */
export function systemFacts(ep) {
  const info = ep["system-info"] || {};
  const sys = info.system || {};
  const facts = [];
  const hw = [sys.manufacturer, sys.name].filter(Boolean).join(" ");
  if (hw) facts.push(["Hardware", `${hw}${sys.virtual ? " (virtual machine)" : ""}`]);
  if (info.cpu && info.cpu.name) facts.push(["CPU", `${info.cpu.name} × ${info.cpu.count || "?"}`]);
  if (info.edr && info.edr.version) facts.push(["Agent", info.edr.version]);
  const net = info.network || {};
  if (net.addresses && net.addresses.length) facts.push(["Addresses", net.addresses.join(", ")]);
  return facts;
}

export async function listEndpoints(query = {}) {
  return (await get("/endpoints", query)) || [];
}

/** Events from the global search (`detections=true` keeps only detections). */
export async function searchEvents({ q = "", last = "", since = "", until = "", endpoint = "", detections = false, limit = 200, cursor = "" } = {}) {
  const data = await get("/search", { q, last, since, until, endpoint, detections: detections ? "true" : "", limit, cursor });
  if (Array.isArray(data)) return { events: data, next: "", total: data.length };
  return { events: data.events || [], next: data.cursor || data.next_cursor || "", total: data.total ?? (data.events || []).length };
}

/** Detection aggregates for charts (counts over time, per rule, per endpoint). */
export async function overview({ hours = 24, buckets = 48, top = 10 } = {}) {
  return get("/console/api/overview", { hours, buckets, top });
}
