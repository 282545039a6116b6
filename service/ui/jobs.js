// Jobs: the list (status, stage, progress) and the form that starts one.

import { api } from "./api.js";
import {
  TERMINAL, fill, fmtSeconds, fmtTime, h, labelFilters, parseTags, progressBar, randomKey, secondsBetween, showError,
  statusBadge, tagBadges,
} from "./util.js";

// The common settings; everything else goes in the JSON box (merged over these).
const FIELDS = [
  { path: "teacher.base_model", label: "Teacher base model", type: "text", value: "minilm",
    hint: "minilm (bundled), a Hugging Face model name or a local folder" },
  { path: "teacher.path", label: "Reuse a teacher", type: "select", value: "", options: [["", "no: fine-tune a new one"]],
    hint: "skips teacher training: an uploaded teacher (the Teachers page) or an earlier model's" },
  { path: "teacher.epochs", label: "Teacher epochs", type: "number", value: 2, min: 0 },
  { path: "student.encoder", label: "Student encoder", type: "select", value: "bilstm",
    options: [["bilstm", "BiLSTM"], ["idcnn", "ID-CNN"]] },
  { path: "student.hidden", label: "Student hidden size", type: "number", value: 100, min: 1 },
  { path: "student.crf", label: "CRF output layer", type: "checkbox", value: false },
  { path: "distill.mode", label: "Distillation", type: "select", value: "kd_pseudo",
    options: [["kd_pseudo", "soft targets + pseudo-labels"], ["kd", "soft targets"], ["alone", "none (gold labels only)"]] },
  { path: "distill.epochs", label: "Student epochs (at most)", type: "number", value: 40, min: 0 },
  { path: "distill.baseline", label: "Also train the student alone, to measure the gain", type: "checkbox", value: true },
  { path: "distill.baseline_teaches", label: "Let that student teach beside the teacher when the two are better on dev", type: "checkbox", value: true },
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

function deletePath(obj, path) {
  const keys = path.split(".");
  const parent = getPath(obj, keys.slice(0, -1).join(".")) ?? (keys.length === 1 ? obj : undefined);
  if (parent && typeof parent === "object") delete parent[keys.at(-1)];
}

/** What of a job's config the fields above do not hold, for the JSON box of "Clone and edit". */
function restOfConfig(config) {
  const rest = structuredClone(config);
  for (const path of ["dataset_id", "data", ...FIELDS.map((f) => f.path)]) deletePath(rest, path);
  for (const [k, v] of Object.entries(rest)) {
    if (v === null || (typeof v === "object" && !Object.keys(v).length)) delete rest[k];
  }
  return rest;
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
    h("th", { scope: "row" }, h("a", { href: `#/jobs/${job.id}` }, job.id),
      job.name ? h("span", { class: "record-name" }, job.name) : null, tagBadges(job.tags)),
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

  const labels = labelFilters("jobs", () => refresh());
  async function refresh() {
    const status = filter.value ? `&status=${filter.value}` : "";
    const query = labels.query();
    try {
      const { items } = await api(`/jobs?limit=50${status}${query}`, { signal: page.signal });
      labels.fillTags(items);
      fill(rows, items.length ? items.map(jobRow)
        : h("tr", {}, h("td", { colspan: "7", class: "muted" }, status || query ? "No job matches." : "No jobs yet: start one with the form.")));
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
  const nameInput = h("input", { id: "j-name", name: "name", type: "text", maxlength: "100", placeholder: "optional" });
  const tagsInput = h("input", { id: "j-tags", name: "tags", type: "text", placeholder: "optional: ner, v2", "aria-describedby": "j-tags-hint" });
  inputs.name = nameInput;  // not FIELDS (not in the config): here so that their errors mark them
  inputs.tags = tagsInput;
  const form = h(
    "form", { class: "job-form" },
    h("div", { class: "grid" },
      h("div", { class: "field" }, h("label", { for: idOf("dataset_id") }, "Dataset"), datasetSelect, errorSlot("dataset_id")),
      h("div", { class: "field" }, h("label", { for: "j-name" }, "Name"), nameInput, errorSlot("name")),
      h("div", { class: "field" }, h("label", { for: "j-tags" }, "Tags"), tagsInput,
        h("small", { id: "j-tags-hint", class: "hint" }, "separated by commas or spaces; the model takes them too"),
        errorSlot("tags")),
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
    const labelled = { ...(nameInput.value.trim() ? { name: nameInput.value.trim() } : {}),
      ...(tagsInput.value.trim() ? { tags: parseTags(tagsInput.value) } : {}) };
    return { config: { ...merge(config, given), ...labelled }, given };
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
    if (/^tags\.\d+$/.test(path || "")) path = "tags";  // one tag of the list: shown under the Tags box
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
        // a body field's param is its dotted path; a header's or a query parameter's has a prefix
        placeError(/^(header|query|path)\./.test(item.param || "") ? null : item.param, item.message, built.given);
      }
      form.querySelector("[aria-invalid=true]")?.focus();
    } finally {
      button.disabled = false;
    }
  });

  const startOpen = !!params.get("dataset") || params.has("new") || params.has("clone") || params.has("teacher");
  const cloneNote = h("p", { class: "muted clone-note", role: "status", hidden: true });
  const details = h("details", { class: "start-job", open: startOpen },
    h("summary", {}, h("h2", { id: "start-title" }, "Start a job")), cloneNote, form);

  fill(main,
    h("h1", { tabindex: "-1" }, "Jobs"),
    details,
    h("section", { "aria-labelledby": "jobs-title" },
      h("div", { class: "section-head" },
        h("h2", { id: "jobs-title" }, "Recent jobs"),
        h("div", { class: "inline-field" }, h("label", { for: "status-filter" }, "Status"), filter), labels.node),
      listError,
      h("div", { class: "table-wrap" },
        h("table", { class: "jobs-table" },
          h("thead", {}, h("tr", {}, ["Job", "Status", "Stage", "Progress", "Dataset", "Created", "Took"].map((t) =>
            h("th", { scope: "col", class: t === "Took" ? "num" : null }, t)))),
          rows))));

  /** "Clone and edit": the form holds job `jobId`'s dataset, config, name and tags, to change and submit. */
  async function prefill(jobId) {
    let job;
    try {
      job = await api(`/jobs/${encodeURIComponent(jobId)}`, { signal: page.signal });
    } catch (err) {
      if (err.name !== "AbortError") showError(general, err);
      return;
    }
    const cfg = job.config;
    if (![...datasetSelect.options].some((o) => o.value === cfg.dataset_id)) {
      datasetSelect.append(h("option", { value: cfg.dataset_id }, cfg.dataset_id));
    }
    datasetSelect.value = cfg.dataset_id;
    for (const f of FIELDS) {
      const value = getPath(cfg, f.path);
      const input = inputs[f.path];
      if (f.type === "checkbox") input.checked = !!value;
      else if (f.path === "teacher.path" && value && ![...input.options].some((o) => o.value === value)) {
        input.append(h("option", { value }, value));
        input.value = value;
      } else input.value = value ?? "";
    }
    extra.value = JSON.stringify(restOfConfig(cfg), null, 2);
    nameInput.value = job.name ? `${job.name} (copy)` : "";
    tagsInput.value = (job.tags || []).join(", ");
    fill(cloneNote, "A copy of ", h("a", { href: `#/jobs/${job.id}` }, job.id), ": change what you like and start it.");
    cloneNote.hidden = false;
    idempotencyKey = randomKey();
    details.scrollIntoView();
  }

  // fill the dataset and teacher choices
  const [datasets, teachers, models, jobs] = await Promise.all([
    api("/datasets?limit=100", { signal: page.signal }).catch(() => ({ items: [] })),
    api("/teachers?limit=100", { signal: page.signal }).catch(() => ({ items: [] })),
    api("/models?limit=100", { signal: page.signal }).catch(() => ({ items: [] })),
    refresh(),
  ]);
  fill(datasetSelect,
    datasets.items.length ? null : h("option", { value: "" }, "no datasets: upload one first"),
    datasets.items.map((ds) => h("option", { value: ds.id }, `${ds.name || ds.id} (${ds.id})`)));
  if (params.get("dataset")) datasetSelect.value = params.get("dataset");
  const teacherSelect = inputs["teacher.path"];
  if (teachers.items.length) {
    teacherSelect.append(h("optgroup", { label: "Uploaded teachers" }, teachers.items.map((t) =>
      h("option", { value: t.path }, `${t.name || t.id} (${t.path}, ${t.labels.length} labels)`))));
  }
  if (models.items.length) {
    teacherSelect.append(h("optgroup", { label: "Teachers of earlier models" }, models.items.map((m) =>
      h("option", { value: m.teacher_path }, `teacher of ${m.id} (${m.teacher_path})`))));
  }
  if (params.get("teacher")) teacherSelect.value = params.get("teacher");
  if (params.get("clone")) await prefill(params.get("clone"));
  if (!jobs.length && !filter.value) details.open = true;
  updatePreview();
  page.every(() => {
    // not while the keyboard focus is in the list: replacing the rows would drop it
    if (!document.hidden && !rows.contains(document.activeElement)) refresh();
  }, 3000);
}
