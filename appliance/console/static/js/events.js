// Reading WHIDS-shaped events ({"Event": {System, EventData, EdrData, Detection}}) for display.

import { fmtTime, h, severityBadge } from "./dom.js";

// Any shape can reach the console (empty elements `{}`, numbers, lists, odd System blocks):
// every reader returns a string, a number or an array of strings, never the raw value.
const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
const text = (v) => (typeof v === "string" ? v : typeof v === "number" || typeof v === "boolean" ? String(v) : "");
const ev = (e) => obj(e && e.Event);
const sys = (e) => obj(ev(e).System);

export function eventTime(e) {
  return text(obj(sys(e).TimeCreated).SystemTime) || text(edr(e).ReceiptTime);
}

function edr(e) {
  return obj(obj(ev(e).EdrData).Event);
}

export function eventEndpoint(e) {
  const ep = obj(obj(ev(e).EdrData).Endpoint);
  return {
    uuid: text(ep.UUID || ep.uuid),
    hostname: text(ep.Hostname || ep.hostname) || text(sys(e).Computer),
  };
}

export function eventHash(e) {
  return text(edr(e).Hash);
}

export function eventId(e) {
  const id = sys(e).EventID;
  return id && typeof id === "object" ? text(id.Value) : text(id);
}

export function eventChannel(e) {
  return text(sys(e).Channel);
}

export function detection(e) {
  const d = ev(e).Detection;
  return d && typeof d === "object" && !Array.isArray(d) ? d : null;
}

export function signatures(e) {
  const d = detection(e);
  const s = d ? d.Signature : null;
  return Array.isArray(s) ? s.map(text) : text(s) ? [text(s)] : [];
}

/** The ATT&CK techniques of a detection, as "T1140 (defense-evasion)". */
export function attack(e) {
  const d = detection(e);
  const items = (d && Array.isArray(d.ATTACK) && d.ATTACK) || [];
  return items.map((a) => (a.Tactic ? `${a.ID} (${a.Tactic})` : String(a.ID || "")));
}

export function criticality(e) {
  const d = detection(e);
  return (d && Number(d.Criticality)) || 0;
}

/** The most telling EventData field (image, command line, query, target...). */
export function eventSubject(e) {
  const data = obj(ev(e).EventData);
  for (const k of ["CommandLine", "Image", "QueryName", "TargetFilename", "TargetObject", "DestinationIp"]) {
    if (text(data[k])) return text(data[k]);
  }
  return "";
}

export function processGuid(e) {
  return text(obj(ev(e).EventData).ProcessGuid).replace(/[{}]/g, "");
}

function endpointLink(e) {
  const ep = eventEndpoint(e);
  return ep.uuid ? h("a", { href: `#/endpoints/${ep.uuid}` }, ep.hostname || ep.uuid) : ep.hostname;
}

/** Table columns for a list of detections; `onShow(e)` opens the detail view. */
export function detectionColumns(onShow) {
  return [
    { label: "Time (UTC)", class: "mono", render: (e) => fmtTime(eventTime(e)) },
    { label: "Endpoint", render: endpointLink },
    { label: "Rules", render: (e) => signatures(e).join(", ") },
    { label: "ATT&CK", class: "mono", render: (e) => attack(e).join(", ") },
    { label: "Criticality", render: (e) => severityBadge(criticality(e)) },
    { label: "Event", render: (e) => `${eventChannel(e).split("/")[0]} ${eventId(e) ?? ""}` },
    { label: "Subject", class: "mono", render: (e) => eventSubject(e).slice(0, 140) },
    {
      label: "Detail",
      render: (e) => h("button", { type: "button", class: "link", onclick: () => onShow(e) }, "Show"),
    },
  ];
}

/** Table columns for search results (any event). */
export function eventColumns(onShow) {
  return [
    { label: "Time (UTC)", class: "mono", render: (e) => fmtTime(eventTime(e)) },
    { label: "Endpoint", render: endpointLink },
    { label: "Channel", render: eventChannel },
    { label: "ID", render: eventId },
    { label: "Detection", render: (e) => signatures(e).join(", ") },
    { label: "Subject", class: "mono", render: (e) => eventSubject(e).slice(0, 160) },
    {
      label: "Detail",
      render: (e) => h("button", { type: "button", class: "link", onclick: () => onShow(e) }, "Show"),
    },
  ];
}

/** A detail block for one event: key facts and the full JSON. */
export function eventDetail(e) {
  const data = obj(ev(e).EventData);
  const ep = eventEndpoint(e);
  return h(
    "div",
    { class: "event-detail" },
    h(
      "dl",
      { class: "kv" },
      h("dt", {}, "Time"), h("dd", {}, fmtTime(eventTime(e))),
      h("dt", {}, "Endpoint"), h("dd", {}, `${ep.hostname} ${ep.uuid}`),
      h("dt", {}, "Channel / ID"), h("dd", {}, `${eventChannel(e)} / ${eventId(e) ?? ""}`),
      h("dt", {}, "Rules"), h("dd", {}, signatures(e).join(", ") || "—"),
      h("dt", {}, "ATT&CK"), h("dd", { class: "mono" }, attack(e).join(", ") || "—"),
      h("dt", {}, "Image"), h("dd", { class: "mono" }, text(data.Image) || "—"),
      h("dt", {}, "Hash"), h("dd", { class: "mono" }, eventHash(e) || "—"),
    ),
    h("h3", {}, "Event JSON"),
    h("pre", { tabindex: "0", "aria-label": "Event JSON" }, JSON.stringify(e, null, 2)),
  );
}
