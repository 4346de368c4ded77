// Console entry point: session bootstrap, login form, hash router and page lifecycle.

import { session, setUnauthorizedHandler } from "./api.js";
import { errorBox, field, h, replace, toast } from "./dom.js";
import * as admin from "./pages/admin.js";
import * as attack from "./pages/attack.js";
import * as dashboard from "./pages/dashboard.js";
import * as detections from "./pages/detections.js";
import * as endpoint from "./pages/endpoint.js";
import * as endpoints from "./pages/endpoints.js";
import * as hunt from "./pages/hunt.js";
import * as iocs from "./pages/iocs.js";
import * as misp from "./pages/misp.js";
import * as rules from "./pages/rules.js";
import * as search from "./pages/search.js";
import * as users from "./pages/users.js";

// [pattern, page module, nav href, admin only]
const ROUTES = [
  [/^\/dashboard$/, dashboard, "#/dashboard", false],
  [/^\/endpoints$/, endpoints, "#/endpoints", false],
  [/^\/endpoints\/([0-9a-fA-F-]{36})$/, endpoint, "#/endpoints", false],
  [/^\/detections$/, detections, "#/detections", false],
  [/^\/attack$/, attack, "#/attack", false],
  [/^\/search$/, search, "#/search", false],
  [/^\/hunt$/, hunt, "#/hunt", false],
  [/^\/rules$/, rules, "#/rules", false],
  [/^\/iocs$/, iocs, "#/iocs", false],
  [/^\/misp$/, misp, "#/misp", false],
  [/^\/users$/, users, "#/users", true],
  [/^\/admin$/, admin, "#/admin", true],
];

// initialLoad: on the first page of a visit focus stays at the document start (skip link first);
// after that, each navigation moves focus to the new page's heading.
const state = { session: null, cleanup: null, generation: 0, initialLoad: true };
const main = () => document.getElementById("main");

function parseHash() {
  const raw = window.location.hash.slice(1) || "/dashboard";
  const [path, qs] = raw.split("?");
  return { path, params: new URLSearchParams(qs || "") };
}

function stopPage() {
  if (typeof state.cleanup === "function") {
    try {
      state.cleanup();
    } catch (err) {
      console.warn("page cleanup failed", err);
    }
  }
  state.cleanup = null;
}

function showShell(show) {
  document.getElementById("topbar").hidden = !show;
  if (!show) return;
  const s = state.session;
  document.getElementById("who").textContent = `${s.name} (${s.role})`;
  for (const li of document.querySelectorAll("#nav [data-role]")) li.hidden = li.dataset.role !== s.role;
}

function markNav(href) {
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === href) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  if (!state.session) return;
  const hash = window.location.hash;
  if (hash && !hash.startsWith("#/")) return; // in-page anchors such as the skip link
  const { path, params } = parseHash();
  const found = ROUTES.find(([re]) => re.test(path));
  stopPage();
  state.generation += 1;
  const gen = state.generation;
  const root = main();
  if (!found) {
    replace(root, h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, h("a", { href: "#/dashboard" }, "Back to the dashboard")));
    return;
  }
  const [re, page, navHref, adminOnly] = found;
  markNav(navHref);
  if (adminOnly && state.session.role !== "admin") {
    replace(root, h("h1", { tabindex: "-1" }, "Admins only"), h("p", {}, "This page needs the admin role."));
    root.querySelector("h1").focus();
    return;
  }
  // Each navigation renders into its own container: a slower, superseded page that finishes
  // later writes into its detached container, never over the current page.
  const box = h("div", { class: "page" }, h("p", { class: "loading" }, "Loading…"));
  replace(root, box);
  const ctx = { session: state.session, params, match: path.match(re), isCurrent: () => gen === state.generation };
  try {
    const cleanup = await page.render(box, ctx);
    if (gen !== state.generation) {
      if (typeof cleanup === "function") cleanup();
      return;
    }
    state.cleanup = cleanup;
  } catch (err) {
    if (gen !== state.generation) return;
    replace(box, h("h1", { tabindex: "-1" }, "Error"), errorBox(err));
  }
  const heading = root.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    const lost = document.activeElement === document.body || !root.contains(document.activeElement);
    if (lost && !state.initialLoad) heading.focus();
  }
  state.initialLoad = false;
  document.title = `${heading ? heading.textContent : "Heron"} · Heron console`;
}

function showLogin(message) {
  stopPage();
  state.session = null;
  showShell(false);
  const input = h("input", { type: "password", name: "api_key", autocomplete: "current-password", required: true, spellcheck: "false" });
  const status = h("div", { "aria-live": "assertive" }, message ? errorBox(message) : null);
  const form = h(
    "form",
    { class: "panel login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Heron console"),
    h("p", { class: "muted" }, "Log in with your admin API key. The key is exchanged for a session; it is not stored in the browser."),
    field("API key", input),
    status,
    h("p", {}, h("button", { type: "submit" }, "Log in")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    replace(status);
    try {
      state.session = await session.login(input.value);
      input.value = "";
      state.initialLoad = false;
      start();
    } catch (err) {
      replace(status, errorBox(err));
      input.focus();
    }
  });
  replace(main(), form);
  document.title = "Log in · Heron console";
  input.focus();
}

function start() {
  showShell(true);
  if (!window.location.hash.startsWith("#/")) window.location.hash = "#/dashboard"; // → hashchange
  else route();
}

async function boot() {
  setUnauthorizedHandler(() => showLogin("Your session has ended; log in again."));
  document.getElementById("logout").addEventListener("click", async () => {
    try {
      await session.logout();
    } catch (err) {
      toast(err.message, "error");
    }
    showLogin();
  });
  window.addEventListener("hashchange", route);
  document.getElementById("skip-link").addEventListener("click", (ev) => {
    ev.preventDefault();
    main().focus();
  });
  try {
    state.session = await session.current();
  } catch {
    state.session = null;
  }
  if (state.session) start();
  else showLogin();
}

boot();
