// Try it: tag your own text with a student and its teacher, side by side, entities highlighted by type.

import { api } from "./api.js";
import { fill, h, typeHue } from "./util.js";

const EXAMPLE = "Kenji Varga said the Turkish team would travel to Warsaw.";

/** The text with each entity wrapped in a <mark> coloured by its type. */
export function highlight(text, entities) {
  const parts = [];
  let at = 0;
  for (const e of [...entities].sort((a, b) => a.start - b.start)) {
    if (e.start < at) continue;
    parts.push(text.slice(at, e.start));
    parts.push(h("mark", { class: "ent", dataset: { label: e.label }, style: { "--hue": typeHue(e.label) } },
      text.slice(e.start, e.end), h("span", { class: "ent-label" }, e.label)));
    at = e.end;
  }
  parts.push(text.slice(at));
  return parts;
}

function resultPanel(panel, side, outcome, texts, roundTripMs) {
  const body = panel.querySelector(".panel-body");
  const time = panel.querySelector(".panel-time");
  if (outcome.status === "rejected") {
    fill(time, "");
    fill(body, h("p", { class: "error", role: "alert" }, outcome.reason.message));
    return;
  }
  const r = outcome.value;
  fill(time, h("strong", {}, `${r.elapsed_ms.toFixed(1)} ms`), " tagging on the server",
    ` · ${Math.round(roundTripMs)} ms round trip`);
  fill(body,
    r.results.map((res, i) => h("p", { class: "tagged" }, highlight(texts[i], res.entities))),
    h("p", { class: "muted small" }, `${r.results.reduce((n, res) => n + res.entities.length, 0)} entities`,
      side === "teacher" && r.note ? ` · ${r.note}` : ""));
}

export async function tryPage(main, params, page) {
  const modelSelect = h("select", { id: "try-model", name: "model" });
  const text = h("textarea", { id: "try-text", name: "text", rows: "4", "aria-describedby": "try-hint" }, EXAMPLE);
  const withTeacher = h("input", { id: "try-teacher", type: "checkbox", checked: true });
  const formError = h("p", { class: "error", role: "alert", hidden: true });
  const panel = (side, label) => h("section", { class: `panel panel-${side}`, "aria-labelledby": `panel-${side}`, dataset: { side } },
    h("h2", { id: `panel-${side}` }, label),
    h("p", { class: "panel-time muted", role: "status" }),
    h("div", { class: "panel-body", "aria-live": "polite" }));
  const student = panel("student", "Student");
  const teacher = panel("teacher", "Teacher");
  const legend = h("p", { class: "legend", "aria-label": "entity types" });

  const form = h("form", { class: "try-form" },
    h("div", { class: "grid" },
      h("div", { class: "field" }, h("label", { for: "try-model" }, "Model"), modelSelect),
      h("div", { class: "field field-check" }, withTeacher, h("label", { for: "try-teacher" }, "Also tag with the teacher (slower)"))),
    h("div", { class: "field" },
      h("label", { for: "try-text" }, "Text"), text,
      h("small", { id: "try-hint", class: "hint" }, "One sentence or paragraph per line.")),
    formError,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Tag")));

  const run = async (side, texts, modelId) => {
    const started = performance.now();
    const value = await api("/predict", {
      method: "POST", json: { model_id: modelId || undefined, texts, use_teacher: side === "teacher" },
    });
    return { value, ms: performance.now() - started };
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const texts = text.value.split("\n").map((t) => t.trim()).filter(Boolean);
    formError.hidden = true;
    if (!texts.length) {
      formError.hidden = false;
      formError.textContent = "Type or paste some text first.";
      text.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Tagging…";
    for (const p of [student, teacher]) fill(p.querySelector(".panel-body"), h("p", { class: "muted" }, "Tagging…"));
    teacher.hidden = !withTeacher.checked;
    // one after the other, so neither model's time includes waiting for the other
    const outcomes = {};
    for (const side of withTeacher.checked ? ["student", "teacher"] : ["student"]) {
      try {
        const { value, ms } = await run(side, texts, modelSelect.value);
        outcomes[side] = { status: "fulfilled", value, ms };
      } catch (reason) {
        outcomes[side] = { status: "rejected", reason };
      }
      resultPanel(side === "student" ? student : teacher, side, outcomes[side], texts, outcomes[side].ms);
    }
    const labels = new Set();
    for (const o of Object.values(outcomes)) {
      if (o.status === "fulfilled") o.value.results.forEach((r) => r.entities.forEach((e) => labels.add(e.label)));
    }
    fill(legend, [...labels].sort().map((l) => h("span", { class: "ent legend-item", style: { "--hue": typeHue(l) } }, l)));
    button.disabled = false;
    button.textContent = "Tag";
  });

  fill(main,
    h("h1", { tabindex: "-1" }, "Try it"),
    form,
    legend,
    h("div", { class: "side-by-side" }, student, teacher));

  try {
    const { items } = await api("/models?limit=100", { signal: page.signal });
    fill(modelSelect, items.length ? items.map((m) => h("option", { value: m.id },
      `${m.id} (student F1 ${m.student?.test ? (100 * m.student.test.f1).toFixed(1) : m.student?.dev ? (100 * m.student.dev.f1).toFixed(1) : "?"})`))
      : h("option", { value: "" }, "no models yet"));
    if (params.get("model")) modelSelect.value = params.get("model");
  } catch (err) {
    if (err.name !== "AbortError") { formError.hidden = false; formError.textContent = err.message; }
  }
}
