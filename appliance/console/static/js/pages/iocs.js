// IoCs: list with filters, add, delete; shows where each indicator came from (source).

import { del, getPage, post } from "../api.js";
import { confirmDialog, errorBox, field, h, replace, select, table, toast } from "../dom.js";

const IOC_PAGE = 1000;
export const IOC_TYPES = ["md5", "sha1", "sha256", "imphash", "domain", "hostname", "ip-src", "ip-dst", "filename", "regkey", "named-pipe"];

export async function render(root, ctx) {
  const isAdmin = ctx.session.role === "admin";
  const fValue = h("input", { type: "search", name: "value", autocomplete: "off" });
  const fType = select("type", [["", "any"], ...IOC_TYPES.map((t) => [t, t])]);
  const fSource = h("input", { type: "text", name: "source", autocomplete: "off" });
  const listBox = h("div");

  let iocs = [];
  let next = null;
  const more = h("button", { type: "button", class: "secondary", id: "iocs-more", hidden: true, onclick: () => load(true) }, "Load more");

  async function load(append = false) {
    const page = await getPage("/iocs", { limit: IOC_PAGE, cursor: append ? next : undefined });
    iocs = append ? iocs.concat(page.data || []) : (page.data || []);
    next = page.next;
    more.hidden = !next;
    show();
  }

  function show() {
    const v = fValue.value.trim().toLowerCase();
    const rows = iocs.filter((i) => (!v || String(i.value).toLowerCase().includes(v))
      && (!fType.value || i.type === fType.value)
      && (!fSource.value.trim() || String(i.source || "").includes(fSource.value.trim())));
    replace(listBox, table(
      [
        { label: "Type", key: "type" },
        { label: "Value", class: "mono", key: "value" },
        { label: "Source", key: "source" },
        { label: "Group uuid", class: "mono", key: "guuid" },
        {
          label: "Actions",
          render: (i) => (isAdmin || ctx.session.role === "plugin")
            ? h("button", { type: "button", class: "danger", "aria-label": `Delete ${i.type} ${i.value}`, onclick: () => remove(i) }, "Delete")
            : "—",
        },
      ],
      rows.slice(0, 1000),
      { caption: `${rows.length} of ${iocs.length} loaded indicator(s)${rows.length > 1000 ? " (first 1000 shown)" : ""}${next ? "; more on the server" : ""}`, empty: "No indicator." },
    ));
  }

  async function remove(ioc) {
    if (!(await confirmDialog("Delete IoC", `Delete ${ioc.type} ${ioc.value}?`, "Delete"))) return;
    try {
      await del("/iocs", ioc.uuid ? { uuid: ioc.uuid } : { value: ioc.value, type: ioc.type });
      toast("IoC deleted");
      await load();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  const aType = select("type", IOC_TYPES.map((t) => [t, t]), "sha256");
  const aValue = h("input", { type: "text", name: "value", class: "wide", required: true, autocomplete: "off", spellcheck: "false" });
  const aSource = h("input", { type: "text", name: "source", value: "console" });
  const addStatus = h("div", { "aria-live": "assertive" });
  const addForm = h("form", { class: "inline", "aria-labelledby": "ioc-add" },
    field("Type", aType), field("Value", aValue), field("Source", aSource), h("button", { type: "submit", disabled: !isAdmin }, "Add IoC"));
  addForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    replace(addStatus);
    try {
      await post("/iocs", [{ uuid: crypto.randomUUID(), guuid: crypto.randomUUID(), type: aType.value, value: aValue.value.trim(), source: aSource.value.trim() || "console" }]);
      toast(`IoC ${aValue.value.trim()} added`);
      aValue.value = "";
      await load();
      aValue.focus();
    } catch (err) {
      replace(addStatus, errorBox(err));
    }
  });
  const filterForm = h("form", { class: "inline", role: "search", "aria-label": "Filter IoCs" },
    field("Value contains", fValue), field("Type", fType), field("Source", fSource), h("button", { type: "submit" }, "Filter"));
  filterForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    show();
  });
  replace(root, h("h1", {}, "IoCs"),
    h("section", { class: "panel", "aria-labelledby": "ioc-add" }, h("h2", { id: "ioc-add" }, "Add an indicator"), addForm, addStatus),
    filterForm, listBox, more);
  await load();
}
