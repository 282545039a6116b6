// Models: each trained student with its teacher's scores, sizes, speeds and the download.

import { api, downloadLink } from "./api.js";
import { f1Table, gainPanel, headline, sizeSpeedTable } from "./compare.js";
import { fill, fmtSeconds, fmtTime, h } from "./util.js";

function modelCard(m, open) {
  const cfg = m.config || {};
  const seconds = Object.entries(m.seconds || {}).filter(([k]) => k !== "total")
    .map(([k, v]) => `${k} ${fmtSeconds(v)}`).join(", ");
  const student = cfg.student || {};
  return h(
    "article", { class: "card model", id: `model-${m.id}`, dataset: { id: m.id } },
    h("header", { class: "card-head" },
      h("h2", {}, m.id),
      h("span", { class: "muted" },
        `${fmtTime(m.created_at)} · job `, h("a", { href: `#/jobs/${m.job_id}` }, m.job_id), ` · dataset ${m.dataset_id}`)),
    headline(m),
    gainPanel(m),
    h("p", { class: "muted small" },
      `Student: ${student.encoder || "bilstm"}${student.crf ? " + CRF" : ""}, hidden ${student.hidden ?? "?"}; `,
      `distillation ${cfg.distill?.mode || "?"}; teacher ${cfg.teacher?.path ? "reused" : cfg.teacher?.base_model || "?"}; `,
      `trained on ${m.device}${seconds ? ` in ${fmtSeconds(m.seconds?.total)} (${seconds})` : ""}.`),
    h("details", { open },
      h("summary", {}, "Per-type F1, size and speed"),
      h("div", { class: "two-col" }, f1Table(m), sizeSpeedTable(m)),
      h("p", { class: "muted small" }, "Teacher folder (reusable as a job's teacher.path): ", h("code", {}, m.teacher_path))),
    h("div", { class: "actions" },
      downloadLink(`/models/${m.id}/download`, `${m.id}.tar.gz`, "Download the student (.tar.gz)"),
      h("a", { class: "button secondary", href: `#/try?model=${m.id}` }, "Try it")),
  );
}

export async function modelsPage(main, params, page) {
  const list = h("div", { class: "cards" }, h("p", { class: "muted" }, "Loading…"));
  fill(main, h("h1", { tabindex: "-1" }, "Models"),
    h("p", { class: "muted" }, "Each model is a student with the teacher it learnt from, measured side by side on the same machine."),
    list);
  try {
    const { items } = await api("/models?limit=100", { signal: page.signal });
    const wanted = params.get("model");
    fill(list, items.length
      ? items.map((m, i) => modelCard(m, wanted ? m.id === wanted : i === 0))
      : h("p", { class: "muted" }, "No models yet: they appear when a job succeeds."));
    if (wanted) document.getElementById(`model-${wanted}`)?.scrollIntoView();
  } catch (err) {
    if (err.name !== "AbortError") fill(list, h("p", { class: "error", role: "alert" }, err.message));
  }
}
