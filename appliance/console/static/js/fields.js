// Field names of the query language (docs/index.md) for suggestions under a query box.

import { h, replace } from "./dom.js";

export const FIELDS = [
  "EventID", "Criticality", "ts", "ReceiptTime", "endpoint", "hostname", "Signature", "EventHash",
  "Channel", "Computer", "detection", "retro", "Image", "CommandLine", "ParentImage",
  "ParentCommandLine", "TargetFilename", "TargetObject", "QueryName", "User", "ProcessGuid",
  "ParentProcessGuid", "ProcessId", "DestinationIp", "DestinationPort", "DestinationHostname",
  "SourceIp", "SourcePort", "Hashes", "sha256", "sha1", "md5", "imphash", "hash", "ImageLoaded",
  "GrantedAccess", "TargetImage", "SourceImage", "Details", "TargetUserName", "LogonType",
  "IpAddress", "ServiceName", "ScriptBlockText", "CurrentDirectory", "IntegrityLevel",
];

/** Suggestions for the word being typed at the end of `input`; a click completes it. */
export function fieldSuggestions(input) {
  const box = h("div", { class: "suggest", role: "group", "aria-label": "Field suggestions" });
  const update = () => {
    const m = /(^|[\s(!+-])([A-Za-z][A-Za-z0-9_]*)$/.exec(input.value);
    const word = m ? m[2].toLowerCase() : "";
    const hits = word ? FIELDS.filter((f) => f.toLowerCase().startsWith(word) && f.toLowerCase() !== word).slice(0, 8) : [];
    replace(box, hits.map((f) => h("button", {
      type: "button", class: "chip", "aria-label": `Use field ${f}`,
      onclick: () => {
        input.value = input.value.slice(0, input.value.length - m[2].length) + `${f}:`;
        input.focus();
        update();
      },
    }, `${f}:`)));
  };
  input.addEventListener("input", update);
  return box;
}
