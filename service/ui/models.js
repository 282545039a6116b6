// Models: each trained student with its teacher's scores, sizes, speeds and the downloads, its name and
// tags, and the aliases (production, ...) that point to it, with a way to move one onto it.

import { api, downloadLink } from "./api.js";
import { f1Table, gainPanel, headline, membersTable, sizeSpeedTable, teacherMembers } from "./compare.js";
import { fill, fmtSeconds, fmtTime, h, labelFilters, showError, tagBadges } from "./util.js";

/** The aliases on model `m`, each with a button that removes it, and a form that points one at `m`. */
function aliasBlock(m, aliases, reload) {
  const mine = aliases.filter((a) => a.model_id === m.id);
  const name = h("input", { id: `alias-${m.id}`, name: "alias", type: "text", value: "production", size: "12", list: "alias-names",
    spellcheck: false, autocomplete: "off" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "inline-field alias-form" },
    h("label", { for: `alias-${m.id}` }, "Alias"), name,
    h("button", { type: "submit", class: "secondary small-button" }, "Point it at this model"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(`/aliases/${encodeURIComponent(name.value.trim())}`, { method: "PUT", json: { model_id: m.id } });
      reload();
    } catch (err) {
      showError(error, err);
    }
  });
  const remove = (alias) => h("button", { type: "button", class: "link-button", "aria-label": `Remove the alias ${alias}`,
    onclick: async () => {
      try { await api(`/aliases/${encodeURIComponent(alias)}`, { method: "DELETE" }); reload(); }
      catch (err) { showError(error, err); }
    } }, "×");
  return h("div", { class: "aliases" },
    h("p", { class: "alias-list" }, mine.length ? ["Aliases: ", mine.map((a) => h("span", { class: "chip chip-alias",
      dataset: { alias: a.name } }, a.name, " ", remove(a.name)))] : h("span", { class: "muted" }, "No alias points here.")),
    form, error);
}

/** The model card's words for its teacher: an ensemble, a reused folder, or the model fine-tuned. */
function teacherText(m) {
  const members = teacherMembers(m).length || m.config?.teacher?.ensemble?.length;
  if (members) return `ensemble of ${members}`;
  return m.config?.teacher?.path ? "reused" : m.config?.teacher?.base_model || "?";
}

function modelCard(m, open, aliases, reload) {
  const cfg = m.config || {};
  const seconds = Object.entries(m.seconds || {}).filter(([k]) => k !== "total")
    .map(([k, v]) => `${k} ${fmtSeconds(v)}`).join(", ");
  const student = cfg.student || {};
  return h(
    "article", { class: "card model", id: `model-${m.id}`, dataset: { id: m.id } },
    h("header", { class: "card-head" },
      h("h2", {}, m.id),
      m.name ? h("span", { class: "record-name" }, m.name) : null,
      tagBadges(m.tags),
      h("span", { class: "muted" },
        `${fmtTime(m.created_at)} · job `, h("a", { href: `#/jobs/${m.job_id}` }, m.job_id), ` · dataset ${m.dataset_id}`)),
    aliasBlock(m, aliases, reload),
    headline(m),
    gainPanel(m),
    h("p", { class: "muted small" },
      `Student: ${student.encoder || "bilstm"}${student.crf ? " + CRF" : ""}, hidden ${student.hidden ?? "?"}; `,
      `distillation ${cfg.distill?.mode || "?"}; teacher ${teacherText(m)}; `,
      `trained on ${m.device}${seconds ? ` in ${fmtSeconds(m.seconds?.total)} (${seconds})` : ""}.`),
    h("details", { open },
      h("summary", {}, "Per-type F1, size and speed"),
      h("div", { class: "two-col" }, f1Table(m), sizeSpeedTable(m)),
      membersTable(m),
      h("p", { class: "muted small" }, teacherMembers(m).length ? "Folder of the ensemble's first member" : "Teacher folder",
        " (reusable as a job's teacher.path): ", h("code", {}, m.teacher_path))),
    h("div", { class: "actions" },
      downloadLink(`/models/${m.id}/download`, `${m.id}.tar.gz`, "Download the student (.tar.gz)"),
      downloadLink(`/models/${m.id}/download?which=teacher`, `${m.id}-teacher.tar.gz`, "Download the teacher (.tar.gz)"),
      h("a", { class: "button secondary", href: `#/try?model=${m.id}` }, "Try it")),
  );
}

export async function modelsPage(main, params, page) {
  const list = h("div", { class: "cards" }, h("p", { class: "muted" }, "Loading…"));
  const names = h("datalist", { id: "alias-names" });
  const filters = labelFilters("models", (query) => load(query));
  fill(main, h("h1", { tabindex: "-1" }, "Models"),
    h("p", { class: "muted" }, "Each model is a student with the teacher it learnt from, measured side by side on the same machine. ",
      "POST /predict without a model uses the one your alias ", h("code", {}, "production"), " points to."),
    filters.node, names, list);
  const wanted = params.get("model");

  async function load(query = filters.query()) {
    try {
      const [{ items }, aliases] = await Promise.all([
        api(`/models?limit=100${query}`, { signal: page.signal }),
        api("/aliases", { signal: page.signal }),
      ]);
      filters.fillTags(items);
      fill(names, [...new Set(["production", ...aliases.items.map((a) => a.name)])].map((n) => h("option", { value: n })));
      const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.closest("article").dataset.id));
      fill(list, items.length
        ? items.map((m, i) => modelCard(m, open.size ? open.has(m.id) : wanted ? m.id === wanted : i === 0, aliases.items, () => load()))
        : h("p", { class: "muted" }, query ? "No model matches." : "No models yet: they appear when a job succeeds."));
    } catch (err) {
      if (err.name !== "AbortError") fill(list, h("p", { class: "error", role: "alert" }, err.message));
    }
  }
  await load();
  if (wanted) document.getElementById(`model-${wanted}`)?.scrollIntoView();
}
