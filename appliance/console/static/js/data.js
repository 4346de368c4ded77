// Fleet data fetchers shared by several pages (one place that knows the admin API routes).

import { get } from "./api.js";
import { toDate } from "./dom.js";

export const ONLINE_WINDOW_MS = 5 * 60 * 1000;

export function isOnline(ep) {
  const seen = toDate(ep["last-connection"]);
  return Boolean(seen && Date.now() - seen.getTime() < ONLINE_WINDOW_MS);
}

export function endpointOs(ep) {
  const info = ep["system-info"] || {};
  const sys = info.system || info.System || info;
  const os = sys.os || sys.OS || info.os || {};
  if (typeof os === "string") return os;
  return [os.name || os.Name, os.version || os.Version].filter(Boolean).join(" ");
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
