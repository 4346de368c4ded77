// Endpoints list: status, system info, last seen, group, criticality; actions per endpoint.

import { actionButtons } from "../actions.js";
import { post } from "../api.js";
import { endpointOs, isOnline, listEndpoints, rulesState } from "../data.js";
import { field, fmtAgo, fmtTime, h, replace, saveBlob, select, table, toast } from "../dom.js";

/** Mint an offline enrollment bundle (POST /enroll/bundle) and save it as a file for
 * `heron-agent enroll --bundle FILE` (it holds the endpoint's private key: handle it as a secret). */
async function offlineBundle(groupName, reload) {
  const doc = await post("/enroll/bundle", { group: groupName, hostname: "" });
  saveBlob(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }), `heron-bundle-${doc.uuid}.json`);
  toast(`Bundle for endpoint ${doc.uuid} saved (manager ${doc.manager}); it holds a private key.`);
  await reload();
}

function statusBadge(ep) {
  if (ep.status === "revoked") return h("span", { class: "badge bad" }, "revoked");
  if (ep.status === "pending") return h("span", { class: "badge idle" }, "pending");
  return isOnline(ep) ? h("span", { class: "badge ok" }, "online") : h("span", { class: "badge warn" }, "offline");
}

export async function render(root, ctx) {
  const isAdmin = ctx.session.role === "admin";
  const group = h("input", { type: "text", name: "group", value: ctx.params.get("group") || "" });
  const status = select("status", [["", "any"], ["active", "active"], ["pending", "pending"], ["revoked", "revoked"]], ctx.params.get("status") || "");
  const crit = h("input", { type: "number", name: "criticality", min: "0", max: "10", value: ctx.params.get("criticality") || "" });
  const results = h("div", { "aria-live": "polite" });

  async function load() {
    const eps = await listEndpoints({ group: group.value, status: status.value, criticality: crit.value });
    eps.sort((a, b) => String(a.hostname).localeCompare(String(b.hostname)));
    replace(
      results,
      table(
        [
          { label: "Hostname", render: (ep) => h("a", { href: `#/endpoints/${ep.uuid}` }, ep.hostname || "(not enrolled)") },
          { label: "UUID", class: "mono", key: "uuid" },
          { label: "Status", render: statusBadge },
          { label: "IP", class: "mono", key: "ip" },
          { label: "System", render: (ep) => endpointOs(ep) || "—" },
          { label: "Group", key: "group" },
          { label: "Criticality", key: "criticality" },
          { label: "Score", render: (ep) => Number(ep.score || 0).toFixed(1) },
          { label: "Rules", render: (ep) => h("span", { class: `badge ${ep.rules && ep.rules.status === "ok" ? "ok" : "warn"}` }, rulesState(ep)) },
          { label: "Last seen", render: (ep) => h("span", { title: fmtTime(ep["last-connection"]) }, fmtAgo(ep["last-connection"])) },
          { label: "Actions", render: (ep) => actionButtons(ep, load, { isAdmin }) },
        ],
        eps,
        { caption: `${eps.length} endpoint(s)`, empty: "No endpoint matches." },
      ),
    );
  }

  const form = h(
    "form",
    { class: "inline", role: "search", "aria-label": "Filter endpoints" },
    field("Group", group),
    field("Status", status),
    field("Minimum criticality", crit),
    h("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load().catch((err) => replace(results, h("p", { class: "error", role: "alert" }, err.message)));
  });
  const bundleButton = isAdmin
    ? h("button", { type: "button", onclick: () => offlineBundle(group.value, load).catch((err) => toast(err.message, "error")) },
      "Offline enrollment bundle")
    : null;
  replace(root, h("h1", {}, "Endpoints"), form, bundleButton, results);
  await load();
}
