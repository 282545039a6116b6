// Try it: tag your own text with a student and its teacher, side by side, entities highlighted by type,
// the spans where the two disagree marked, each entity's score, and the request as a curl line.

import { api, apiKey } from "./api.js";
import { fill, h, typeHue } from "./util.js";

const EXAMPLE = "Kenji Varga said the Turkish team would travel to Warsaw.";
const PRODUCTION = "production";  // the alias POST /predict uses without a model

const spanKey = (e) => `${e.start}:${e.end}:${e.label}`;

/**
 * The text with each entity wrapped in a <mark> coloured by its type, with its score when it has one;
 * with `others` (the other model's entities on the same text), the entities it lacks are marked as
 * disagreements.
 */
export function highlight(text, entities, others = null) {
  const theirs = others && new Set(others.map(spanKey));
  const parts = [];
  let at = 0;
  for (const e of [...entities].sort((a, b) => a.start - b.start)) {
    if (e.start < at) continue;
    const differs = theirs ? !theirs.has(spanKey(e)) : false;
    const score = typeof e.score === "number" ? e.score : null;
    parts.push(text.slice(at, e.start));
    parts.push(h("mark", {
      class: differs ? "ent differs" : "ent", dataset: { label: e.label, ...(differs ? { differs: "" } : {}) },
      style: { "--hue": typeHue(e.label) },
      title: [differs ? "the other model does not tag this span so" : null, score !== null ? `score ${score.toFixed(3)}` : null]
        .filter(Boolean).join("; ") || null,
    },
    text.slice(e.start, e.end), h("span", { class: "ent-label" }, e.label),
    score !== null ? h("span", { class: "ent-score" }, score.toFixed(2)) : null));
    at = e.end;
  }
  parts.push(text.slice(at));
  return parts;
}

/** How many entities of one model's results the other model's lack, over all texts. */
function disagreements(mine, theirs) {
  return mine.results.reduce((n, res, i) => {
    const other = new Set(theirs.results[i].entities.map(spanKey));
    return n + res.entities.filter((e) => !other.has(spanKey(e))).length;
  }, 0);
}

function resultPanel(panel, side, outcome, texts, other) {
  const body = panel.querySelector(".panel-body");
  const time = panel.querySelector(".panel-time");
  if (outcome.status === "rejected") {
    fill(time, "");
    fill(body, h("p", { class: "error", role: "alert" }, outcome.reason.message));
    return;
  }
  const r = outcome.value;
  const compared = other?.status === "fulfilled" ? other.value : null;
  fill(time, h("strong", {}, `${r.elapsed_ms.toFixed(1)} ms`), " tagging on the server",
    ` · ${Math.round(outcome.ms)} ms round trip`);
  fill(body,
    r.results.map((res, i) => h("p", { class: "tagged" }, highlight(texts[i], res.entities, compared?.results[i].entities))),
    h("p", { class: "muted small panel-model" }, `${r.results.reduce((n, res) => n + res.entities.length, 0)} entities · `,
      h("a", { href: `#/models?model=${r.model_id}` }, r.model_id), r.alias ? ` (alias ${r.alias})` : "",
      side === "teacher" && r.note ? ` · ${r.note}` : ""));
}

/** The request as one curl line for a terminal: the same body, a placeholder for the API key if one is in use. */
export function curlLine(body) {
  const quote = (s) => `'${s.replace(/'/g, "'\\''")}'`;
  return [`curl -X POST ${quote(`${location.origin}/predict`)}`, "-H 'Content-Type: application/json'",
    apiKey.get() ? "-H 'Authorization: Bearer <your API key>'" : null, `-d ${quote(JSON.stringify(body))}`]
    .filter(Boolean).join(" ");
}

export async function tryPage(main, params, page) {
  const modelSelect = h("select", { id: "try-model", name: "model", "aria-describedby": "try-model-hint" });
  const modelHint = h("small", { id: "try-model-hint", class: "hint" });
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
  const verdict = h("p", { class: "disagree-summary", role: "status" });
  const curl = h("code", { id: "try-curl" });
  const copy = h("button", { type: "button", class: "secondary small-button" }, "Copy");

  const form = h("form", { class: "try-form" },
    h("div", { class: "grid" },
      h("div", { class: "field" }, h("label", { for: "try-model" }, "Model"), modelSelect, modelHint),
      h("div", { class: "field field-check" }, withTeacher, h("label", { for: "try-teacher" }, "Also tag with the teacher (slower)"))),
    h("div", { class: "field" },
      h("label", { for: "try-text" }, "Text"), text,
      h("small", { id: "try-hint", class: "hint" }, "One sentence or paragraph per line.")),
    formError,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Tag")));

  const textsOf = () => text.value.split("\n").map((t) => t.trim()).filter(Boolean);
  // an alias or a model id: POST /predict takes either as "model"
  const body = (texts, side) => ({ model: modelSelect.value || undefined, texts, ...(side === "teacher" ? { use_teacher: true } : {}) });
  const showCurl = () => fill(curl, curlLine(body(textsOf(), "student")));
  form.addEventListener("input", showCurl);
  form.addEventListener("change", showCurl);
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(curl.textContent);
      copy.textContent = "Copied";
    } catch {  // no clipboard outside a secure context: select the line for Ctrl+C instead
      getSelection().selectAllChildren(curl);
      copy.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => { copy.textContent = "Copy"; }, 2000);
  });

  const run = async (side, texts) => {
    const started = performance.now();
    const value = await api("/predict", { method: "POST", json: body(texts, side) });
    return { value, ms: performance.now() - started };
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const texts = textsOf();
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
    fill(verdict);
    teacher.hidden = !withTeacher.checked;
    // one after the other, so neither model's time includes waiting for the other
    const outcomes = {};
    for (const side of withTeacher.checked ? ["student", "teacher"] : ["student"]) {
      try {
        const { value, ms } = await run(side, texts);
        outcomes[side] = { status: "fulfilled", value, ms };
      } catch (reason) {
        outcomes[side] = { status: "rejected", reason };
      }
      if (side === "student") resultPanel(student, side, outcomes.student, texts, null);  // now, not after the teacher
    }
    resultPanel(student, "student", outcomes.student, texts, outcomes.teacher);
    if (outcomes.teacher) resultPanel(teacher, "teacher", outcomes.teacher, texts, outcomes.student);
    if (outcomes.student.status === "fulfilled" && outcomes.teacher?.status === "fulfilled") {
      const [s, t] = [outcomes.student.value, outcomes.teacher.value];
      const n = disagreements(s, t) + disagreements(t, s);
      fill(verdict, n ? `${n} span${n === 1 ? "" : "s"} where the student and the teacher disagree, outlined.`
        : "The student and the teacher agree on every span.");
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
    verdict,
    h("div", { class: "side-by-side" }, student, teacher),
    h("details", { class: "curl" }, h("summary", {}, "The request as curl"),
      h("pre", { class: "preview" }, curl), copy));

  try {
    const [{ items }, aliases] = await Promise.all([
      api("/models?limit=100", { signal: page.signal }),
      api("/aliases", { signal: page.signal }),
    ]);
    const f1 = (m) => (m.student?.test ? (100 * m.student.test.f1).toFixed(1) : m.student?.dev ? (100 * m.student.dev.f1).toFixed(1) : "?");
    const label = (m) => `${m.name ? `${m.name} · ` : ""}${m.id} (student F1 ${f1(m)})`;
    fill(modelSelect,
      aliases.items.length ? h("optgroup", { label: "Aliases" },
        aliases.items.map((a) => h("option", { value: a.name }, `${a.name} → ${a.model_id}`))) : null,
      items.length ? h("optgroup", { label: "Models" }, items.map((m) => h("option", { value: m.id }, label(m))))
        : h("option", { value: "" }, "no models yet"));
    const production = aliases.items.some((a) => a.name === PRODUCTION);
    modelSelect.value = params.get("model") || (production ? PRODUCTION : items[0]?.id || "");
    fill(modelHint, production ? `Without a model, POST /predict uses the alias ${PRODUCTION}.`
      : ["No ", h("code", {}, PRODUCTION), " alias yet: point one at a model on the ", h("a", { href: "#/models" }, "Models page"),
        " so that POST /predict without a model uses it."]);
  } catch (err) {
    if (err.name !== "AbortError") { formError.hidden = false; formError.textContent = err.message; }
  }
  showCurl();
}
