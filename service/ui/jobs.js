// Jobs: the list (status, stage, progress) and the form that starts one.

import { api } from "./api.js";
import {
  TERMINAL, fill, fmtSeconds, fmtTime, h, progressBar, randomKey, secondsBetween, showError, statusBadge,
} from "./util.js";

// The common settings; everything else goes in the JSON box (merged over these).
const FIELDS = [
  { path: "teacher.base_model", label: "Teacher base model", type: "text", value: "minilm",
    hint: "minilm (bundled), a Hugging Face model name or a local folder" },
  { path: "teacher.path", label: "Reuse a teacher", type: "select", value: "", options: [["", "no: fine-tune a new one"]],
    hint: "skips teacher training" },
  { path: "teacher.epochs", label: "Teacher epochs", type: "number", value: 2, min: 0 },
  { path: "student.encoder", label: "Student encoder", type: "select", value: "bilstm",
    options: [["bilstm", "BiLSTM"], ["idcnn", "ID-CNN"]] },
  { path: "student.hidden", label: "Student hidden size", type: "number", value: 100, min: 1 },
  { path: "student.crf", label: "CRF output layer", type: "checkbox", value: false },
  { path: "distill.mode", label: "Distillation", type: "select", value: "kd_pseudo",
    options: [["kd_pseudo", "soft targets + pseudo-labels"], ["kd", "soft targets"], ["alone", "none (gold labels only)"]] },
  { path: "distill.epochs", label: "Student epochs (at most)", type: "number", value: 40, min: 0 },
  { path: "distill.baseline", label: "Also train the student alone, to measure the gain", type: "checkbox", value: true },
  { path: "device", label: "Device", type: "select", value: "auto", options: [["auto", "auto (GPU if any)"], ["cpu", "CPU"], ["cuda", "CUDA GPU"]] },
];

const idOf = (path) => `j-${path.replace(/\./g, "-")}`;

function getPath(obj, path) {
  return path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), obj);
}

function setPath(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] ??= {};
  o[keys.at(-1)] = value;
}

function merge(base, extra) {
  for (const [k, v] of Object.entries(extra)) {
    if (v && typeof v === "object" && !Array.isArray(v) && base[k] && typeof base[k] === "object") merge(base[k], v);
    else base[k] = v;
  }
  return base;
}

function jobRow(job) {
  const running = job.status === "running";
  const p = job.progress || {};
  const secs = secondsBetween(job.started_at, job.finished_at);
  return h(
    "tr", { dataset: { id: job.id, status: job.status } },
    h("th", { scope: "row" }, h("a", { href: `#/jobs/${job.id}` }, job.id)),
    h("td", {}, statusBadge(job.status)),
    h("td", {}, job.status === "succeeded" ? "done" : job.stage || "–"),
    h("td", { class: "progress-cell" },
      progressBar(job.status === "succeeded" ? 1 : p.fraction, `progress of ${job.id}`),
      h("span", { class: "muted" }, `${Math.round(100 * (job.status === "succeeded" ? 1 : p.fraction || 0))}%`,
        running && p.eta_s ? ` · ${fmtSeconds(p.eta_s)} left` : "")),
    h("td", {}, job.dataset_id),
    h("td", {}, fmtTime(job.created_at)),
    h("td", { class: "num" }, secs === null ? "–" : fmtSeconds(secs)),
  );
}

export async function jobsPage(main, params, page) {
  const rows = h("tbody", {});
  const listError = h("p", { class: "error", role: "alert", hidden: true });
  const filter = h("select", { id: "status-filter" },
    [["", "all"], ["queued", "queued"], ["running", "running"], ["succeeded", "succeeded"], ["failed", "failed"], ["cancelled", "cancelled"]]
      .map(([v, t]) => h("option", { value: v }, t)));

  async function refresh() {
    const status = filter.value ? `&status=${filter.value}` : "";
    try {
      const { items } = await api(`/jobs?limit=50${status}`, { signal: page.signal });
      fill(rows, items.length ? items.map(jobRow)
        : h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No jobs yet: start one with the form.")));
      showError(listError, null);
      return items;
    } catch (err) {
      if (err.name !== "AbortError") showError(listError, err);
      return [];
    }
  }
  filter.addEventListener("change", refresh);

  // --- the form ---
  const general = h("p", { class: "error", role: "alert", hidden: true });
  const preview = h("pre", { class: "preview", "aria-live": "off" });
  const datasetSelect = h("select", { id: idOf("dataset_id"), name: "dataset_id", required: true, dataset: { path: "dataset_id" } });
  const errorSlot = (path) => h("p", { class: "field-error", role: "alert", hidden: true, dataset: { errorFor: path } });

  const inputs = {};
  const fieldNode = (f) => {
    const id = idOf(f.path);
    let input;
    if (f.type === "select") {
      input = h("select", { id, name: f.path }, f.options.map(([v, t]) => h("option", { value: v }, t)));
      input.value = f.value;
    } else if (f.type === "checkbox") {
      input = h("input", { id, name: f.path, type: "checkbox", checked: f.value });
    } else {
      input = h("input", { id, name: f.path, type: f.type, value: String(f.value), min: f.min, step: f.type === "number" ? "1" : null, required: f.type === "number" });
    }
    input.dataset.path = f.path;
    if (f.hint) input.setAttribute("aria-describedby", `${id}-hint`);
    inputs[f.path] = input;
    const label = h("label", { for: id }, f.label);
    return h("div", { class: `field ${f.type === "checkbox" ? "field-check" : ""}` },
      f.type === "checkbox" ? [input, label] : [label, input],
      f.hint ? h("small", { id: `${id}-hint`, class: "hint" }, f.hint) : null,
      errorSlot(f.path));
  };

  const extra = h("textarea", {
    id: "j-config", name: "config", rows: "6", spellcheck: false, "aria-describedby": "j-config-hint",
    placeholder: '{"teacher": {"learning_rate": 5e-5}, "distill": {"temperature": 3}}',
  });
  const form = h(
    "form", { class: "job-form" },
    h("div", { class: "grid" },
      h("div", { class: "field" }, h("label", { for: idOf("dataset_id") }, "Dataset"), datasetSelect, errorSlot("dataset_id")),
      FIELDS.map(fieldNode)),
    h("div", { class: "field" },
      h("label", { for: "j-config" }, "Full config (JSON)"),
      extra,
      h("small", { id: "j-config-hint", class: "hint" },
        "Any other setting of the job config, merged over the fields above (see docs/API.md or /docs). ",
        "Paths such as teacher.path are relative to the service's data directory."),
      errorSlot("config")),
    h("details", {}, h("summary", {}, "The config that will be sent"), preview),
    general,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Start job")),
  );

  let idempotencyKey = randomKey(); // one per intended job: a double submit does not make two

  function buildConfig() {
    const config = {};
    setPath(config, "dataset_id", datasetSelect.value);
    for (const f of FIELDS) {
      const input = inputs[f.path];
      let value = f.type === "checkbox" ? input.checked : input.value;
      if (f.type === "number") value = value === "" ? undefined : Number(value);
      if (value === undefined || (f.path === "teacher.path" && !value)) continue;
      setPath(config, f.path, value);
    }
    const text = extra.value.trim();
    let given = {};
    if (text) {
      try {
        given = JSON.parse(text);
      } catch (err) {
        throw Object.assign(new Error(`not valid JSON: ${err.message}`), { slot: "config" });
      }
      if (!given || typeof given !== "object" || Array.isArray(given)) {
        throw Object.assign(new Error("give a JSON object, like {\"teacher\": {\"epochs\": 3}}"), { slot: "config" });
      }
    }
    return { config: merge(config, given), given };
  }

  const updatePreview = () => {
    try {
      preview.textContent = JSON.stringify(buildConfig().config, null, 2);
    } catch (err) {
      preview.textContent = err.message;
    }
  };
  form.addEventListener("input", () => { idempotencyKey = randomKey(); updatePreview(); });
  form.addEventListener("change", updatePreview);

  const clearErrors = () => {
    for (const slot of form.querySelectorAll("[data-error-for]")) { slot.hidden = true; fill(slot); }
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    showError(general, null);
  };
  const placeError = (path, message, given) => {
    let slotPath = path;
    if (!form.querySelector(`[data-error-for="${path}"]`) || (given && getPath(given, path) !== undefined)) slotPath = "config";
    const slot = path ? form.querySelector(`[data-error-for="${slotPath}"]`) : general;
    slot.append(h("span", {}, slotPath === "config" && path ? h("code", {}, path) : null, slotPath === "config" && path ? ": " : "", message));
    slot.hidden = false;
    const input = slotPath === "config" ? extra : inputs[path] || (path === "dataset_id" ? datasetSelect : null);
    input?.setAttribute("aria-invalid", "true");
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    let built;
    try {
      built = buildConfig();
    } catch (err) {
      const slot = form.querySelector('[data-error-for="config"]');
      fill(slot, err.message);
      slot.hidden = false;
      extra.setAttribute("aria-invalid", "true");
      extra.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const job = await api("/jobs", { method: "POST", json: built.config, headers: { "Idempotency-Key": idempotencyKey } });
      idempotencyKey = randomKey();
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      const items = err.fieldErrors;
      if (!items.length) showError(general, err);
      for (const item of items) {
        const loc = item.loc || [];
        placeError(loc[0] === "body" && loc.length > 1 ? loc.slice(1).join(".") : null, item.msg, built.given);
      }
      form.querySelector("[aria-invalid=true]")?.focus();
    } finally {
      button.disabled = false;
    }
  });

  const startOpen = !!params.get("dataset") || params.has("new");
  const details = h("details", { class: "start-job", open: startOpen },
    h("summary", {}, h("h2", { id: "start-title" }, "Start a job")), form);

  fill(main,
    h("h1", { tabindex: "-1" }, "Jobs"),
    details,
    h("section", { "aria-labelledby": "jobs-title" },
      h("div", { class: "section-head" },
        h("h2", { id: "jobs-title" }, "Recent jobs"),
        h("div", { class: "inline-field" }, h("label", { for: "status-filter" }, "Status"), filter)),
      listError,
      h("div", { class: "table-wrap" },
        h("table", { class: "jobs-table" },
          h("thead", {}, h("tr", {}, ["Job", "Status", "Stage", "Progress", "Dataset", "Created", "Took"].map((t) =>
            h("th", { scope: "col", class: t === "Took" ? "num" : null }, t)))),
          rows))));

  // fill the dataset and teacher choices
  const [datasets, models, jobs] = await Promise.all([
    api("/datasets?limit=100", { signal: page.signal }).catch(() => ({ items: [] })),
    api("/models?limit=100", { signal: page.signal }).catch(() => ({ items: [] })),
    refresh(),
  ]);
  fill(datasetSelect,
    datasets.items.length ? null : h("option", { value: "" }, "no datasets: upload one first"),
    datasets.items.map((ds) => h("option", { value: ds.id }, `${ds.name || ds.id} (${ds.id})`)));
  if (params.get("dataset")) datasetSelect.value = params.get("dataset");
  for (const m of models.items) {
    inputs["teacher.path"].append(h("option", { value: m.teacher_path }, `teacher of ${m.id} (${m.teacher_path})`));
  }
  if (!jobs.length && !filter.value) details.open = true;
  updatePreview();
  page.every(() => {
    // not while the keyboard focus is in the list: replacing the rows would drop it
    if (!document.hidden && !rows.contains(document.activeElement)) refresh();
  }, 3000);
}
