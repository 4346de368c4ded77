// Users and API keys (admins only): list, create (key shown once), rotate key, delete.

import { del, get, post } from "../api.js";
import { confirmDialog, errorBox, field, h, modal, replace, select, table, toast } from "../dom.js";

function showKey(user) {
  return modal("New API key", (close) => h("div", {},
    h("p", {}, `API key for ${user.identifier}. Copy it now: it is stored hashed and cannot be shown again.`),
    h("pre", { tabindex: "0", "aria-label": "API key", class: "mono", id: "new-api-key" }, user.key || "(no key returned)"),
    h("button", { type: "button", autofocus: true, onclick: () => close() }, "Done")));
}

export async function render(root, ctx) {
  const listBox = h("div");

  async function load() {
    const users = (await get("/users")) || [];
    replace(listBox, table(
      [
        { label: "Identifier", key: "identifier" },
        { label: "Role", key: "role" },
        { label: "Group", key: "group" },
        { label: "Description", key: "description" },
        { label: "UUID", class: "mono", key: "uuid" },
        {
          label: "Actions",
          render: (u) => h("div", { class: "actions" },
            h("button", { type: "button", class: "secondary", "aria-label": `New key for ${u.identifier}`, onclick: () => rotate(u) }, "New key"),
            h("button", { type: "button", class: "danger", "aria-label": `Delete ${u.identifier}`, disabled: u.identifier === ctx.session.name, onclick: () => remove(u) }, "Delete")),
        },
      ],
      users,
      { caption: `${users.length} user(s)` },
    ));
  }

  async function rotate(u) {
    if (!(await confirmDialog("New API key", `Replace the API key of ${u.identifier}? The old key stops working at once.`, "Replace key"))) return;
    try {
      const updated = await post(`/users/${u.uuid}`, {}, { newkey: "true" });
      await showKey({ ...u, ...updated });
      await load();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  async function remove(u) {
    if (!(await confirmDialog("Delete user", `Delete ${u.identifier} and revoke their API key?`, "Delete"))) return;
    try {
      await del(`/users/${u.uuid}`);
      toast(`${u.identifier} deleted`);
      await load();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  const ident = h("input", { type: "text", name: "identifier", required: true, autocomplete: "off" });
  const role = select("role", [["analyst", "analyst (read only)"], ["admin", "admin"], ["plugin", "plugin (automation)"]], "analyst");
  const group = h("input", { type: "text", name: "group" });
  const desc = h("input", { type: "text", name: "description", class: "wide" });
  const addStatus = h("div", { "aria-live": "assertive" });
  const form = h("form", { class: "inline", "aria-labelledby": "user-add" },
    field("Identifier", ident), field("Role", role), field("Group", group), field("Description", desc),
    h("button", { type: "submit" }, "Create user"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    replace(addStatus);
    try {
      const user = await post("/users", { identifier: ident.value.trim(), role: role.value, group: group.value.trim(), description: desc.value.trim() });
      ident.value = "";
      desc.value = "";
      await showKey(user);
      await load();
    } catch (err) {
      replace(addStatus, errorBox(err));
    }
  });
  replace(root, h("h1", {}, "Users and API keys"),
    h("section", { class: "panel", "aria-labelledby": "user-add" }, h("h2", { id: "user-add" }, "Create a user"), form, addStatus),
    listBox);
  await load();
}
