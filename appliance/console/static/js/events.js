// Reading WHIDS-shaped events ({"Event": {System, EventData, EdrData, Detection}}) for display.

import { fmtTime, h, severityBadge } from "./dom.js";

const ev = (e) => (e && e.Event) || {};

export function eventTime(e) {
  const sys = ev(e).System || {};
  return (sys.TimeCreated && sys.TimeCreated.SystemTime) || edr(e).ReceiptTime || "";
}

function edr(e) {
  return (ev(e).EdrData && ev(e).EdrData.Event) || {};
}

export function eventEndpoint(e) {
  const ep = (ev(e).EdrData && ev(e).EdrData.Endpoint) || {};
  return { uuid: ep.UUID || ep.uuid || "", hostname: ep.Hostname || ep.hostname || (ev(e).System || {}).Computer || "" };
}

export function eventHash(e) {
  return edr(e).Hash || "";
}

export function eventId(e) {
  const id = (ev(e).System || {}).EventID;
  return id && typeof id === "object" ? id.Value : id;
}

export function eventChannel(e) {
  return (ev(e).System || {}).Channel || "";
}

export function detection(e) {
  return ev(e).Detection || null;
}

export function signatures(e) {
  const d = detection(e);
  return (d && d.Signature) || [];
}

/** The ATT&CK techniques of a detection, as "T1140 (defense-evasion)". */
export function attack(e) {
  const d = detection(e);
  const items = (d && Array.isArray(d.ATTACK) && d.ATTACK) || [];
  return items.map((a) => (a.Tactic ? `${a.ID} (${a.Tactic})` : String(a.ID || "")));
}

export function criticality(e) {
  const d = detection(e);
  return (d && d.Criticality) || 0;
}

/** The most telling EventData field (image, command line, query, target...). */
export function eventSubject(e) {
  const data = ev(e).EventData || {};
  for (const k of ["CommandLine", "Image", "QueryName", "TargetFilename", "TargetObject", "DestinationIp"]) {
    if (data[k]) return String(data[k]);
  }
  return "";
}

export function processGuid(e) {
  return ((ev(e).EventData || {}).ProcessGuid || "").replace(/[{}]/g, "");
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
  const data = ev(e).EventData || {};
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
      h("dt", {}, "Image"), h("dd", { class: "mono" }, data.Image || "—"),
      h("dt", {}, "Hash"), h("dd", { class: "mono" }, eventHash(e) || "—"),
    ),
    h("h3", {}, "Event JSON"),
    h("pre", { tabindex: "0", "aria-label": "Event JSON" }, JSON.stringify(e, null, 2)),
  );
}
