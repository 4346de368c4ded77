// Endpoint actions shared by the endpoints list and the endpoint page: command, contain, revoke.

import { post } from "./api.js";
import { confirmDialog, errorBox, field, h, modal, replace, toast } from "./dom.js";

/** Split a command line shell-style (quotes group words, backslashes are kept for Windows paths). */
export function splitCommandLine(line) {
  const out = [];
  let cur = "";
  let quote = "";
  let any = false;
  for (const ch of line) {
    if (quote) {
      if (ch === quote) quote = "";
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      any = true;
    } else if (/\s/.test(ch)) {
      if (cur || any) out.push(cur);
      cur = "";
      any = false;
    } else {
      cur += ch;
    }
  }
  if (cur || any) out.push(cur);
  return out;
}

/** Queue a command on an endpoint (dialog); resolves to the queued command or undefined. */
export function commandDialog(ep) {
  return modal(`Run a command on ${ep.hostname || ep.uuid}`, (close) => {
    const line = h("input", { type: "text", name: "command-line", class: "wide", required: true, autocomplete: "off", spellcheck: "false" });
    const timeout = h("input", { type: "number", name: "timeout", min: "1", max: "3600", value: "15" });
    const fetch = h("input", { type: "text", name: "fetch", class: "wide", autocomplete: "off", placeholder: "C:\\path\\one.log, /var/log/two.log" });
    const status = h("div", { "aria-live": "assertive" });
    const form = h(
      "form",
      {},
      field("Command line", line, "Runs on the endpoint with the agent's privileges."),
      field("Timeout (seconds)", timeout),
      field("Files to fetch (comma separated)", fetch),
      status,
      h("div", { class: "actions" },
        h("button", { type: "submit" }, "Queue command"),
        h("button", { type: "button", class: "secondary", onclick: () => close() }, "Cancel")),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const argv = splitCommandLine(line.value.trim());
      if (!argv.length) return;
      try {
        // Heron form (seconds); the WHIDS form with "command-line" takes nanoseconds.
        const cmd = await post(`/endpoints/${ep.uuid}/command`, {
          name: argv[0],
          args: argv.slice(1),
          timeout: Number(timeout.value) || 15,
          fetch: fetch.value.split(",").map((v) => v.trim()).filter(Boolean),
        });
        toast(`Command queued for ${ep.hostname || ep.uuid}`);
        window.dispatchEvent(new CustomEvent("heron:command-queued", { detail: ep.uuid }));
        close(cmd || true);
      } catch (err) {
        replace(status, errorBox(err));
      }
    });
    setTimeout(() => line.focus(), 0);
    return form;
  });
}

/** Contain (network-isolate) an endpoint after confirmation. */
export async function contain(ep) {
  const ok = await confirmDialog(
    "Contain endpoint",
    `Isolate ${ep.hostname || ep.uuid} from the network? Only the manager stays reachable.`,
    "Contain",
  );
  if (!ok) return false;
  // The agent's built-in `contain` command (nft/iptables/netsh); `uncontain` lifts it.
  await post(`/endpoints/${ep.uuid}/command`, { name: "contain", args: [] });
  toast(`Containment queued for ${ep.hostname || ep.uuid}`);
  return true;
}

/** Revoke an endpoint's certificate after confirmation. */
export async function revoke(ep) {
  const ok = await confirmDialog(
    "Revoke endpoint",
    `Revoke the certificate of ${ep.hostname || ep.uuid}? The agent can no longer connect until re-enrolled.`,
    "Revoke",
  );
  if (!ok) return false;
  await post(`/endpoints/${ep.uuid}/revoke`, {});
  toast(`${ep.hostname || ep.uuid} revoked`);
  return true;
}

/** Buttons for one endpoint; `after()` runs once an action succeeded (refresh). */
export function actionButtons(ep, after, { isAdmin }) {
  const run = (fn) => async () => {
    try {
      if (await fn(ep)) after();
    } catch (err) {
      toast(err.message, "error");
    }
  };
  const label = ep.hostname || ep.uuid;
  return h(
    "div",
    { class: "actions" },
    h("button", { type: "button", class: "secondary", disabled: !isAdmin, "aria-label": `Run a command on ${label}`, onclick: run(commandDialog) }, "Command"),
    h("button", { type: "button", class: "secondary", disabled: !isAdmin, "aria-label": `Contain ${label}`, onclick: run(contain) }, "Contain"),
    h("button", { type: "button", class: "danger", disabled: !isAdmin || ep.status === "revoked", "aria-label": `Revoke ${label}`, onclick: run(revoke) }, "Revoke"),
  );
}
