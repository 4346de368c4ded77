// Process tree of a detection: ancestors and children from the stored process-creation events
// (ProcessGuid / ParentProcessGuid), the agent's tracking data (`Ancestors`) when the parents were
// not stored; the detected process is highlighted. Every value is text.

import { searchEvents } from "./data.js";
import { h } from "./dom.js";

const MAX_DEPTH = 12;
const MAX_CHILDREN = 50;

const data = (e) => (e && e.Event && e.Event.EventData) || {};

async function creation(guid, endpoint) {
  if (!guid) return null;
  const { events } = await searchEvents({ q: `ProcessGuid:"${guid}" AND EventID:1`, endpoint, limit: 1 });
  return events[0] || null;
}

function node(label, sub, { hit = false, guid = "" } = {}) {
  return h("li", { class: hit ? "tree-hit" : undefined, "aria-current": hit ? "true" : undefined, "data-guid": guid || undefined },
    h("span", { class: "mono" }, label), sub ? h("span", { class: "muted" }, ` ${sub}`) : null);
}

const describe = (d) => [d.Image || "?", d.ProcessId ? `pid ${d.ProcessId}` : "", d.CommandLine ? `· ${d.CommandLine}` : ""].filter(Boolean).join(" ");

/** [{label, sub}] from the root ancestor down to the parent of the detected process. */
async function ancestors(d, endpoint) {
  const chain = [];
  let parent = d.ParentProcessGuid;
  let parentImage = d.ParentImage;
  const seen = new Set([d.ProcessGuid]);
  while (parent && !seen.has(parent) && chain.length < MAX_DEPTH) {
    seen.add(parent);
    const found = await creation(parent, endpoint);
    if (!found) {
      chain.push({ label: parentImage || parent, sub: "(not stored)", guid: parent });
      break;
    }
    const pd = data(found);
    chain.push({ label: describe(pd), sub: "", guid: parent });
    parent = pd.ParentProcessGuid;
    parentImage = pd.ParentImage;
  }
  chain.reverse();
  if (chain.length <= 1 && d.Ancestors) { // the agent's tracking data: the image chain
    const images = String(d.Ancestors).split("|").filter(Boolean);
    return images.map((img) => ({ label: img, sub: "(tracking)", guid: "" }));
  }
  return chain;
}

/** The tree as nested lists: ancestors → the detected process (highlighted) → its children. */
export async function processTree(event, endpoint) {
  let d = data(event);
  if (!d.ProcessGuid) return h("p", { class: "muted" }, "This event names no process (no ProcessGuid).");
  const created = await creation(d.ProcessGuid, endpoint);
  if (created) d = { ...data(created), ...d };
  const [up, kids] = await Promise.all([
    ancestors(d, endpoint),
    searchEvents({ q: `ParentProcessGuid:"${d.ProcessGuid}" AND EventID:1`, endpoint, limit: MAX_CHILDREN }),
  ]);
  const children = kids.events.map((c) => node(describe(data(c)), "", { guid: data(c).ProcessGuid }));
  let inner = node(describe(d), "← detection", { hit: true, guid: d.ProcessGuid });
  if (children.length) inner.append(h("ul", {}, children));
  for (const a of [...up].reverse()) {
    const li = node(a.label, a.sub, { guid: a.guid });
    li.append(h("ul", {}, inner));
    inner = li;
  }
  return h("ul", { class: "process-tree", "aria-label": "Process tree" }, inner);
}
