// The dashboard's shell: hash routing (#/datasets, #/teachers, #/jobs, #/jobs/<id>, #/models, #/try),
// the API key dialog and the service's health in the header.

import { api, apiKey } from "./api.js";
import { datasetsPage } from "./datasets.js";
import { jobPage } from "./job.js";
import { jobsPage } from "./jobs.js";
import { modelsPage } from "./models.js";
import { teachersPage } from "./teachers.js";
import { tryPage } from "./try.js";
import { fill, h } from "./util.js";

const ROUTES = [
  [/^\/datasets$/, datasetsPage, "Datasets", "datasets"],
  [/^\/teachers$/, teachersPage, "Teachers", "teachers"],
  [/^\/jobs$/, jobsPage, "Jobs", "jobs"],
  [/^\/jobs\/([\w.-]+)$/, jobPage, "Job", "jobs"],
  [/^\/models$/, modelsPage, "Models", "models"],
  [/^\/try$/, tryPage, "Try it", "try"],
];

const main = document.getElementById("main");
let leaveCurrent = () => {};

async function route() {
  if (location.hash && !location.hash.startsWith("#/")) return; // an in-page anchor, not a page
  const [path, query = ""] = (location.hash.slice(1) || "/jobs").split("?");
  leaveCurrent();
  const controller = new AbortController();
  const timers = [];
  const leaves = [];
  const page = {
    signal: controller.signal,
    every: (fn, ms) => timers.push(setInterval(fn, ms)),
    onLeave: (fn) => leaves.push(fn),
  };
  leaveCurrent = () => {
    controller.abort();
    timers.forEach(clearInterval);
    leaves.forEach((fn) => fn());
  };

  const found = ROUTES.map(([re, ...rest]) => [path.match(re), ...rest]).find(([m]) => m);
  for (const link of document.querySelectorAll("nav a")) {
    if (found && link.dataset.section === found[3]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!found) {
    document.title = "Not found · tagdistill";
    fill(main, h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, "No page here. ", h("a", { href: "#/jobs" }, "Go to the jobs.")));
    main.querySelector("h1").focus();
    return;
  }
  const [match, handler, title] = found;
  document.title = `${title} · tagdistill`;
  const done = handler(main, new URLSearchParams(query), page, ...match.slice(1).map(decodeURIComponent));
  main.querySelector("h1")?.focus({ preventScroll: true }); // keyboard and screen reader users start at the page
  try {
    await done;
  } catch (err) {
    if (err.name === "AbortError" || controller.signal.aborted) return;
    fill(main, h("h1", { tabindex: "-1" }, title), h("p", { class: "error", role: "alert" }, err.message));
  }
}

// --- the API key, kept for this browser session ---
const keyButton = document.getElementById("key-button");
const keyDialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");

function showKeyState() {
  const set = !!apiKey.get();
  keyButton.textContent = set ? "API key ✓" : "API key";
  keyButton.setAttribute("aria-label", set ? "API key (set for this session)" : "API key (none set)");
}

keyButton.addEventListener("click", () => {
  keyInput.value = apiKey.get();
  keyDialog.showModal();
});
keyDialog.addEventListener("close", () => {
  if (keyDialog.returnValue === "save") apiKey.set(keyInput.value.trim());
  else if (keyDialog.returnValue === "clear") apiKey.set("");
  else return;
  showKeyState();
  route();
  checkHealth();
});

// --- the service's health ---
const health = document.getElementById("health");
async function checkHealth() {
  try {
    const body = await api("/health");
    const n = body.workers.length;
    health.className = `health health-${body.status}`;
    health.textContent = body.status === "ok" ? `${n} worker${n === 1 ? "" : "s"} ready` : "no worker running";
    health.title = `version ${body.version}, queue ${body.queue}`;
  } catch (err) {
    health.className = "health health-down";
    health.textContent = err.status === 503 ? "Redis unreachable" : err.status === 401 || err.status === 403 ? "API key needed" : "service unreachable";
    health.title = err.message;
  }
}

document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener("hashchange", route);
showKeyState();
route();
checkHealth();
setInterval(() => { if (!document.hidden) checkHealth(); }, 15000);
