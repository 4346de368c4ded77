// Admin API client for the console: session cookie + CSRF header, {data,message,error} envelope.

const CSRF_COOKIE = "__Host-heron-csrf";
const CSRF_HEADER = "X-CSRF-Token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
  }
}

let onUnauthorized = () => {};

/** Register what happens when the session is gone (401): the app shows the login form. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

/** Build a same-origin URL with the non-empty query parameters. */
export function apiUrl(path, query = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  return url;
}

/** Call the admin API; resolves to the envelope's `data` (with `paged`: `{data, next}`, `next`
 * the cursor of the following page or null), rejects with ApiError. */
export async function api(method, path, { query = {}, body, text = false, paged = false } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers[CSRF_HEADER] = readCookie(CSRF_COOKIE);
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(apiUrl(path, query), init);
  const raw = await resp.text();
  let json = null;
  try {
    json = raw ? JSON.parse(raw) : null;
  } catch {
    json = null;
  }
  if (resp.status === 401 && !path.startsWith("/console/api/")) {
    onUnauthorized();
    throw new ApiError(401, "Your session has ended; log in again.");
  }
  const envelope = json && typeof json === "object" && !Array.isArray(json) && "message" in json;
  if (!resp.ok || (envelope && json.message === "NOK")) {
    const msg = (json && (json.error || json.title || json.description)) || raw || resp.statusText;
    throw new ApiError(resp.status, typeof msg === "string" ? msg : JSON.stringify(msg));
  }
  if (text) return raw;
  const data = envelope ? json.data : json;
  return paged ? { data, next: resp.headers.get("X-Heron-Next-Cursor") } : data;
}

export const get = (path, query) => api("GET", path, { query });
/** One page of a cursor-paged list: `{data, next}`. */
export const getPage = (path, query) => api("GET", path, { query, paged: true });
export const post = (path, body, query) => api("POST", path, { body, query });
export const put = (path, body, query) => api("PUT", path, { body, query });
export const del = (path, query) => api("DELETE", path, { query });

/**
 * Subscribe to a Server-Sent Events stream; `onEvent(obj)` gets each JSON message.
 * Returns a function that closes the stream. `onState(open)` reports connectivity.
 */
export function subscribe(path, query, onEvent, onState = () => {}) {
  const source = new EventSource(apiUrl(path, query).toString(), { withCredentials: true });
  const handle = (msg) => {
    if (!msg.data) return;
    try {
      onEvent(JSON.parse(msg.data));
    } catch {
      /* a heartbeat or non-JSON line: ignore */
    }
  };
  source.onmessage = handle;
  for (const name of ["detection", "event"]) source.addEventListener(name, handle);
  source.onopen = () => onState(true);
  source.onerror = () => onState(source.readyState === EventSource.OPEN);
  return () => source.close();
}

/** Session routes of the console itself. */
export const session = {
  current: () => get("/console/api/session"),
  login: (apiKey) => post("/console/api/login", { api_key: apiKey }),
  logout: () => post("/console/api/logout"),
};
