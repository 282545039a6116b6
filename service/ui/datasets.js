// Datasets: upload (files checked by the service, errors shown by the file they concern) and the list.

import { api } from "./api.js";
import { fill, fmtBytes, fmtInt, fmtTime, h, showError } from "./util.js";

const SPLITS = [
  ["train", "Training file", "labeled sentences the teacher and student learn from", true],
  ["dev", "Dev file", "labeled sentences for choosing the best epoch", true],
  ["test", "Test file", "optional: labeled sentences for the final report", false],
  ["unlabeled", "Unlabeled file", "optional: raw text the teacher labels for the student", false],
];
const FORMATS = [["conll", "CoNLL (token … tag per line)"], ["jsonl", "JSON lines"], ["text", "plain text"]];

export function statsTable(stats) {
  const types = stats.entity_types || [];
  const splits = Object.entries(stats.splits || {});
  return h(
    "div", { class: "table-wrap" },
    h(
      "table", { class: "stats-table" },
      h("caption", {}, `Statistics (${stats.scheme || "?"} tags)`),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Split"), h("th", { scope: "col", class: "num" }, "Sentences"),
        h("th", { scope: "col", class: "num" }, "Tokens"),
        types.map((t) => h("th", { scope: "col", class: "num" }, t)))),
      h("tbody", {}, splits.map(([split, s]) =>
        h("tr", { dataset: { split } },
          h("th", { scope: "row" }, split), h("td", { class: "num" }, fmtInt(s.sentences)),
          h("td", { class: "num" }, fmtInt(s.tokens)),
          types.map((t) => h("td", { class: "num" }, s.entities ? fmtInt(s.entities[t]) : "–"))))),
    ),
  );
}

function datasetCard(ds, onDelete) {
  const status = h("p", { class: "error", role: "alert", hidden: true });
  return h(
    "article", { class: "card", dataset: { id: ds.id } },
    h("header", { class: "card-head" },
      h("h3", {}, ds.name || ds.id),
      h("span", { class: "muted" }, `${ds.id} · ${fmtTime(ds.created_at)} · ${ds.format} · ${fmtBytes(ds.size_bytes)}`)),
    statsTable(ds.stats),
    h("div", { class: "actions" },
      h("a", { class: "button", href: `#/jobs?dataset=${encodeURIComponent(ds.id)}` }, "Start a job"),
      h("button", {
        type: "button", class: "secondary",
        onclick: async () => {
          if (!confirm(`Delete dataset ${ds.name || ds.id} and its files?`)) return;
          try {
            await api(`/datasets/${ds.id}`, { method: "DELETE" });
            await onDelete();
            document.getElementById("list-title")?.focus();
          } catch (err) {
            showError(status, err);
          }
        },
      }, "Delete")),
    status,
  );
}

/** Hide every field's error and the form's general one, before the form is sent again. */
export function clearErrors(form, general) {
  for (const slot of form.querySelectorAll("[data-error-for]")) { slot.hidden = true; fill(slot); }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  showError(general, null);
}

/** Where a 422 belongs: the file field it names, another form field, or the form as a whole. */
export function placeError(form, general, item) {
  const field = item.param;
  const slot = form.querySelector(`[data-error-for="${field}"]`) || general;
  let text = item.message;
  if (item.code === "data_error") {
    const prefix = item.line !== null && item.line !== undefined ? `${item.file}, line ${item.line}: ` : `${item.file}: `;
    if (text.startsWith(prefix)) text = text.slice(prefix.length);
    const where = item.line !== null && item.line !== undefined ? `Line ${item.line}` : "The file";
    slot.append(h("span", {}, h("strong", {}, where), item.filename ? ` of ${item.filename}: ` : ": ", text));
  } else {
    slot.append(h("span", {}, text));
  }
  slot.hidden = false;
  const input = form.querySelector(`[name="${field}"]`);
  input?.setAttribute("aria-invalid", "true");
}

export async function datasetsPage(main, params, page) {
  const general = h("p", { class: "error", role: "alert", hidden: true });
  const done = h("div", { class: "upload-result", role: "status" });
  const list = h("div", { class: "cards", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));

  const field = (name, label, hint, required) =>
    h("div", { class: "field" },
      h("label", { for: `f-${name}` }, label, required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
      h("input", {
        id: `f-${name}`, name, type: "file", required, "aria-describedby": `h-${name} e-${name}`,
        accept: ".conll,.txt,.jsonl,.json,.tsv,.iob,.bio,text/plain",
      }),
      h("small", { id: `h-${name}`, class: "hint" }, hint),
      h("p", { id: `e-${name}`, class: "field-error", role: "alert", hidden: true, dataset: { errorFor: name } }));

  const select = (name, label, options, value) =>
    h("div", { class: "field" },
      h("label", { for: `f-${name}` }, label),
      // defaultSelected, not value: form.reset() after an upload goes back to the default option
      h("select", { id: `f-${name}`, name }, options.map(([v, text]) => h("option", { value: v, defaultSelected: v === value }, text))),
      h("p", { class: "field-error", role: "alert", hidden: true, dataset: { errorFor: name } }));

  const form = h(
    "form", { class: "upload", novalidate: false },
    h("fieldset", {}, h("legend", {}, "Files"), h("div", { class: "grid" }, SPLITS.map((s) => field(...s)))),
    h("fieldset", {}, h("legend", {}, "Format"),
      h("div", { class: "grid" },
        select("format", "Format of train, dev and test", FORMATS, "conll"),
        select("unlabeled_format", "Format of the unlabeled file", FORMATS, "text"),
        h("div", { class: "field" },
          h("label", { for: "f-tag_column" }, "Tag column (CoNLL)"),
          h("input", { id: "f-tag_column", name: "tag_column", type: "number", value: "-1", step: "1", "aria-describedby": "h-tag_column" }),
          h("small", { id: "h-tag_column", class: "hint" }, "0-based; -1 is the last column"),
          h("p", { class: "field-error", role: "alert", hidden: true, dataset: { errorFor: "tag_column" } })),
        h("div", { class: "field" },
          h("label", { for: "f-name" }, "Name"),
          h("input", { id: "f-name", name: "name", type: "text", maxlength: "200", placeholder: "my news NER" }),
          h("p", { class: "field-error", role: "alert", hidden: true, dataset: { errorFor: "name" } })))),
    general,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Upload and check")),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, general);
    fill(done);
    const body = new FormData(form);
    for (const [name] of SPLITS) {
      const file = body.get(name);
      if (file instanceof File && !file.name && file.size === 0) body.delete(name); // no file picked
    }
    if (!body.get("name")) body.delete("name");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Checking…";
    try {
      const ds = await api("/datasets", { method: "POST", form: body });
      form.reset();
      fill(done, h("p", { class: "ok" }, `Uploaded ${ds.name || ds.id} (${ds.id}).`), statsTable(ds.stats),
        h("p", {}, h("a", { href: `#/jobs?dataset=${encodeURIComponent(ds.id)}` }, "Start a job on it")));
      await refresh();
    } catch (err) {
      if (err.fieldErrors.length) {
        err.fieldErrors.forEach((item) => placeError(form, general, item));
        form.querySelector("[aria-invalid=true]")?.focus();
      } else {
        showError(general, err);
      }
    } finally {
      button.disabled = false;
      button.textContent = "Upload and check";
    }
  });

  async function refresh() {
    try {
      const { items } = await api("/datasets?limit=100", { signal: page.signal });
      fill(list, items.length ? items.map((ds) => datasetCard(ds, refresh)) : h("p", { class: "muted" }, "No datasets yet."));
    } catch (err) {
      if (err.name !== "AbortError") fill(list, h("p", { class: "error" }, err.message));
    }
  }

  fill(main,
    h("h1", { tabindex: "-1" }, "Datasets"),
    h("section", { "aria-labelledby": "upload-title" },
      h("h2", { id: "upload-title" }, "Upload a dataset"),
      h("p", { class: "muted" }, "The files are read as a job would read them before anything is kept; a problem is shown by the file it is in, with its line."),
      form, done),
    h("section", { "aria-labelledby": "list-title" }, h("h2", { id: "list-title", tabindex: "-1" }, "Your datasets"), list));
  await refresh();
}
