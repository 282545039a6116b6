// Error analysis of a finished job: the sentences where the student and the teacher disagree (gold beside
// them), filterable by entity type, and which types the student confuses (GET /models/{id}/analysis).

import { api } from "./api.js";
import { fill, fmtInt, h, typeHue } from "./util.js";

const MISSED = "(missed)";
const SPURIOUS = "(spurious)";

/** Tokens with the given spans ([type, first, last + 1]) marked, as in Try it. */
function marked(tokens, spans) {
  const parts = [];
  let at = 0;
  for (const [label, first, last] of [...spans].sort((a, b) => a[1] - b[1])) {
    if (first > at) parts.push(tokens.slice(at, first).join(" "), " ");
    parts.push(h("mark", { class: "ent", dataset: { label }, style: { "--hue": typeHue(label) } },
      tokens.slice(first, last).join(" "), h("span", { class: "ent-label" }, label)), " ");
    at = last;
  }
  if (at < tokens.length) parts.push(tokens.slice(at).join(" "));
  return parts;
}

function sentenceRow(row) {
  const line = (who, spans) => h("div", { class: `who who-${who}` },
    h("span", { class: "who-name" }, who), h("span", { class: "tagged" }, marked(row.tokens, spans)));
  return h("li", { class: "disagreement", dataset: { index: row.index } },
    line("gold", row.gold), line("teacher", row.teacher), line("student", row.student));
}

/** Gold type (rows) against the student's reading (columns), with missed and spurious entities. */
function confusionTable(matrix, caption) {
  const rows = Object.keys(matrix).filter((r) => r !== SPURIOUS).sort();
  const cols = [...new Set(Object.values(matrix).flatMap((r) => Object.keys(r)))].filter((c) => c !== MISSED).sort();
  const cell = (r, c) => {
    const n = matrix[r]?.[c] || 0;
    const kind = r === c ? "right" : n ? "wrong" : "";
    return h("td", { class: `num ${kind}` }, n ? fmtInt(n) : "·");
  };
  return h("div", { class: "table-wrap" }, h("table", { class: "confusion" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Gold \\ predicted"),
      cols.map((c) => h("th", { scope: "col", class: "num" }, c)), h("th", { scope: "col", class: "num" }, "missed"))),
    h("tbody", {},
      rows.map((r) => h("tr", {}, h("th", { scope: "row" }, r), cols.map((c) => cell(r, c)), cell(r, MISSED))),
      h("tr", {}, h("th", { scope: "row" }, "spurious"), cols.map((c) => cell(SPURIOUS, c)), h("td", {}, "")))));
}

/** The analysis section for model ``modelId`` (filled in when it arrives; empty for older models). */
export function analysisPanel(modelId, signal) {
  const section = h("section", { class: "analysis", "aria-labelledby": "analysis-title" });
  const filter = h("select", { id: "disagreement-type" }, h("option", { value: "" }, "all types"));
  const summary = h("p", { class: "muted", role: "status" });
  const list = h("ol", { class: "disagreements" });
  const matrices = h("div", { class: "two-col" });

  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more sentences");
  let limit = 10;  // the job page stays short; "Show more" takes 50

  async function load(type) {
    const query = new URLSearchParams({ limit: String(limit), ...(type ? { type } : {}) });
    const a = await api(`/models/${modelId}/analysis?${query}`, { signal });
    fill(summary, `${fmtInt(a.total_disagreements)} of ${fmtInt(a.sentences)} ${a.split} sentences`
      + `${type ? ` with a ${type} entity` : ""} are tagged differently by the student and the teacher`
      + (a.disagreements.length < a.total_disagreements ? `; the ${a.disagreements.length} with the most differences:` : ":"));
    fill(list, a.disagreements.map(sentenceRow));
    more.hidden = a.disagreements.length >= a.total_disagreements || limit >= 50;
    return a;
  }

  filter.addEventListener("change", () => load(filter.value).catch(() => {}));
  more.addEventListener("click", () => { limit = 50; load(filter.value).catch(() => {}); });
  load("").then((a) => {
    const types = Object.keys(a.confusion.student || {}).filter((t) => t !== SPURIOUS).sort();
    types.forEach((t) => filter.append(h("option", { value: t }, t)));
    fill(matrices,
      confusionTable(a.confusion.student || {}, `The student's entities on ${a.split}: gold type against predicted`),
      confusionTable(a.confusion.teacher || {}, `The teacher's, for comparison`));
    fill(section,
      h("h2", { id: "analysis-title" }, "Where the student and the teacher disagree"),
      h("p", {}, h("label", { for: "disagreement-type" }, "Entity type "), filter),
      summary, list, more, matrices);
  }).catch(() => { section.hidden = true; });  // a model from before the analysis existed: no section
  return section;
}
