// Teachers fine-tuned elsewhere: upload a Hugging Face token-classification folder as an archive (the
// service refuses pickles and says which file), the list with labels and size, a job from one, delete.

import { api } from "./api.js";
import { clearErrors, placeError } from "./datasets.js";
import { fill, fmtBytes, fmtTime, h, showError } from "./util.js";

function teacherRow(t, onDelete) {
  const status = h("p", { class: "error", role: "alert", hidden: true });
  const title = t.name || t.id;
  return h(
    "tr", { dataset: { id: t.id } },
    h("th", { scope: "row" }, t.name ? h("span", { class: "record-name" }, t.name) : null, h("code", {}, t.id)),
    h("td", { class: "teacher-labels" }, t.labels.map((label) => h("span", { class: "chip chip-label" }, label))),
    h("td", {}, t.model_type || "–"),
    h("td", { class: "num" }, fmtBytes(t.size_bytes)),
    h("td", {}, fmtTime(t.created_at)),
    h("td", {},
      h("div", { class: "actions row-actions" },
        h("a", { class: "button secondary small-button", href: `#/jobs?teacher=${encodeURIComponent(t.path)}` },
          "Distil it"),
        h("button", {
          type: "button", class: "secondary small-button", "aria-label": `Delete teacher ${title}`,
          onclick: async () => {
            if (!confirm(`Delete teacher ${title} and its files?`)) return;
            try {
              await api(`/teachers/${encodeURIComponent(t.id)}`, { method: "DELETE" });
              await onDelete();
              document.getElementById("teachers-title")?.focus();
            } catch (err) {
              showError(status, err);  // 409 while a queued or running job uses it: the message names the jobs
            }
          },
        }, "Delete")),
      status),
  );
}

export async function teachersPage(main, params, page) {
  const general = h("p", { class: "error", role: "alert", hidden: true });
  const done = h("div", { class: "upload-result", role: "status" });
  const rows = h("tbody", {}, h("tr", {}, h("td", { colspan: "6", class: "muted" }, "Loading…")));
  const listError = h("p", { class: "error", role: "alert", hidden: true });

  const form = h(
    "form", { class: "upload teacher-upload" },
    h("div", { class: "grid" },
      h("div", { class: "field" },
        h("label", { for: "t-archive" }, "Archive", h("span", { class: "req", "aria-hidden": "true" }, " *")),
        h("input", { id: "t-archive", name: "archive", type: "file", required: true, accept: ".tar.gz,.tgz,.zip",
          "aria-describedby": "t-archive-hint t-archive-error" }),
        h("small", { id: "t-archive-hint", class: "hint" },
          "a .tar.gz, .tgz or .zip of the folder: config.json with id2label, *.safetensors weights, tokenizer.json"),
        h("p", { id: "t-archive-error", class: "field-error", role: "alert", hidden: true, dataset: { errorFor: "archive" } })),
      h("div", { class: "field" },
        h("label", { for: "t-name" }, "Name"),
        h("input", { id: "t-name", name: "name", type: "text", maxlength: "200", placeholder: "optional: my ner" }),
        h("p", { class: "field-error", role: "alert", hidden: true, dataset: { errorFor: "name" } }))),
    general,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Upload and check")),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, general);
    fill(done);
    const body = new FormData(form);
    if (!body.get("name")) body.delete("name");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Checking…";
    try {
      const t = await api("/teachers", { method: "POST", form: body });
      form.reset();
      fill(done, h("p", { class: "ok" }, `Uploaded ${t.name || t.id}: ${t.labels.length} labels. `,
        h("a", { href: `#/jobs?teacher=${encodeURIComponent(t.path)}` }, "Distil it")));
      await refresh();
    } catch (err) {
      if (err.fieldErrors.length) {
        err.fieldErrors.forEach((item) => placeError(form, general, item));
        form.querySelector("[aria-invalid=true]")?.focus();
      } else {
        showError(general, err);  // 413: over TAGDISTILL_MAX_TEACHER_UPLOAD_MB
      }
    } finally {
      button.disabled = false;
      button.textContent = "Upload and check";
    }
  });

  async function refresh() {
    try {
      const { items } = await api("/teachers?limit=100", { signal: page.signal });
      fill(rows, items.length ? items.map((t) => teacherRow(t, refresh))
        : h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No teachers uploaded yet.")));
      showError(listError, null);
    } catch (err) {
      if (err.name !== "AbortError") showError(listError, err);
    }
  }

  fill(main,
    h("h1", { tabindex: "-1" }, "Teachers"),
    h("section", { "aria-labelledby": "upload-teacher-title" },
      h("h2", { id: "upload-teacher-title" }, "Upload a teacher fine-tuned elsewhere"),
      h("p", { class: "muted" }, "Any Hugging Face token-classification folder. Nothing that can run code when loaded is ",
        "taken (no pickle: *.bin, *.pt, ...); a refused file is named. A job maps its labels onto its dataset's."),
      form, done),
    h("section", { "aria-labelledby": "teachers-title" },
      h("h2", { id: "teachers-title", tabindex: "-1" }, "Uploaded teachers"),
      listError,
      h("div", { class: "table-wrap" },
        h("table", { class: "teachers-table" },
          h("thead", {}, h("tr", {}, ["Teacher", "Labels", "Model", "Size", "Uploaded", "Actions"].map((t) =>
            h("th", { scope: "col", class: t === "Size" ? "num" : null }, t)))),
          rows))));
  await refresh();
}
