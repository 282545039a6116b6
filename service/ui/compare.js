// Teacher vs student: the per-type F1 table, the size and speed table, what distillation bought
// against the same student trained alone, and a teacher ensemble's members (job and model pages).

import { fmtBytes, fmtF1, fmtInt, fmtRatio, h } from "./util.js";

/** The split the comparison is reported on: test when the dataset has one, else dev. */
export function reportSplit(side) {
  return side && side.test ? "test" : "dev";
}

/** Per entity type F1, teacher vs student; `result` = {teacher, student} of a model or report. */
export function f1Table(result, caption) {
  const split = reportSplit(result.teacher);
  const teacher = result.teacher?.[split] || {};
  const student = result.student?.[split] || {};
  const types = [...new Set([...Object.keys(teacher.per_type || {}), ...Object.keys(student.per_type || {})])].sort();
  const row = (name, t, s, isTotal) => {
    const delta = typeof t?.f1 === "number" && typeof s?.f1 === "number" ? 100 * (s.f1 - t.f1) : null;
    return h(
      "tr", { class: isTotal ? "total" : null },
      h("th", { scope: "row" }, name),
      h("td", { class: "num" }, fmtF1(t?.f1)),
      h("td", { class: "num" }, fmtF1(s?.f1)),
      h("td", { class: `num ${delta !== null && delta < -0.05 ? "worse" : ""}` },
        delta === null ? "–" : `${delta > 0 ? "+" : ""}${delta.toFixed(1)}`),
      h("td", { class: "num" }, fmtInt(t?.support ?? s?.support)),
      h("td", { class: "num muted" }, fmtF1(s?.precision)),
      h("td", { class: "num muted" }, fmtF1(s?.recall)),
    );
  };
  return h(
    "div", { class: "table-wrap" },
    h(
      "table", { class: "f1-table" },
      h("caption", {}, caption || `Entity F1 on ${split} (%)`),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Type"), h("th", { scope: "col", class: "num" }, "Teacher"),
        h("th", { scope: "col", class: "num" }, "Student"), h("th", { scope: "col", class: "num" }, "Δ"),
        h("th", { scope: "col", class: "num" }, "Entities"),
        h("th", { scope: "col", class: "num", title: "the student's precision" }, "Student P"),
        h("th", { scope: "col", class: "num", title: "the student's recall" }, "Student R"))),
      h("tbody", {},
        types.map((t) => row(t, teacher.per_type?.[t], student.per_type?.[t], false)),
        row("All", teacher, student, true)),
    ),
  );
}

/** Parameters, bytes on disk and words per second, side by side, with the student's gain. */
export function sizeSpeedTable(result) {
  const t = result.teacher || {};
  const s = result.student || {};
  const tw = t.words_per_second || {};
  const sw = s.words_per_second || {};
  const ratio = (a, b) => (typeof a === "number" && typeof b === "number" && b > 0 ? a / b : null);
  // [row, teacher, student, student's gain (> 1 is better), words for better, words for worse]
  const rows = [
    ["Parameters", fmtInt(t.parameters), fmtInt(s.parameters), ratio(t.parameters, s.parameters), "smaller", "larger"],
    ["Size on disk", fmtBytes(t.bytes_on_disk), fmtBytes(s.bytes_on_disk), ratio(t.bytes_on_disk, s.bytes_on_disk),
      "smaller", "larger"],
    ["Words/s, batch 1", fmtInt(tw.batch_1), fmtInt(sw.batch_1), result.speedup?.batch_1 ?? ratio(sw.batch_1, tw.batch_1),
      "faster", "slower"],
    ["Words/s, batch 32", fmtInt(tw.batch_32), fmtInt(sw.batch_32),
      result.speedup?.batch_32 ?? ratio(sw.batch_32, tw.batch_32), "faster", "slower"],
  ];
  return h(
    "div", { class: "table-wrap" },
    h(
      "table", { class: "size-table" },
      h("caption", {}, "Size and speed",
        h("span", { class: "muted small caption-note" }, speedConditions(result))),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, ""), h("th", { scope: "col", class: "num" }, "Teacher"),
        h("th", { scope: "col", class: "num" }, "Student"), h("th", { scope: "col", class: "num" }, "Student is"))),
      h("tbody", {}, rows.map(([name, a, b, gain, better, worse]) =>
        h("tr", {}, h("th", { scope: "row" }, name), h("td", { class: "num" }, a),
          h("td", { class: "num" }, b),
          h("td", { class: `num ${gain >= 1 ? "gain" : gain ? "loss" : ""}` }, fmtRatio(gain, better, worse))))),
    ),
  );
}

/** What the speeds were measured under: they mean little without it. */
function speedConditions(result) {
  const where = [result.device, result.machine].filter(Boolean).join(", ");
  return ` (words/s measured in the job${where ? ` on ${where}` : ""}, PyTorch; batch 1: one sentence per call, `
    + "batch 32: length-sorted batches)";
}

/** The teacher ensemble's members in the report (teacher.members), [] for one teacher. */
export function teacherMembers(result) {
  return Array.isArray(result.teacher?.members) ? result.teacher.members : [];
}

/** What member `i` of `config`'s teacher ensemble is: its folder, or the model and seed it was fine-tuned from
 * (their defaults as tagdistill/config.py's TeacherConfig.members fills them in). */
function memberSource(config, i) {
  const spec = config?.teacher?.ensemble?.[i];
  if (!spec) return "–";
  if (spec.path) return h("code", {}, spec.path);
  const seed = spec.seed ?? (typeof config.seed === "number" ? config.seed + i : null);
  return `${spec.base_model || config.teacher.base_model}${seed === null ? "" : `, seed ${seed}`}`;
}

/** A teacher ensemble: each member's F1 on dev and test, parameters and size, above the ensemble's own row;
 * null for one teacher. `result` is a model record (its config says what each member is). */
export function membersTable(result) {
  const members = teacherMembers(result);
  if (!members.length) return null;
  const t = result.teacher;
  const splits = ["dev", ...(t.test ? ["test"] : [])];
  const row = (name, what, entry, isTotal) => h(
    "tr", { class: isTotal ? "total" : null, dataset: isTotal ? null : { member: String(entry.member) } },
    h("th", { scope: "row" }, name),
    h("td", { class: "member-source" }, what),
    splits.map((split) => h("td", { class: "num" }, fmtF1(entry[split]?.f1))),
    h("td", { class: "num" }, fmtInt(entry.parameters)),
    h("td", { class: "num" }, fmtBytes(entry.bytes_on_disk)),
  );
  return h(
    "div", { class: "table-wrap members" },
    h(
      "table", { class: "members-table" },
      h("caption", {}, `Teacher: ensemble of ${members.length}`,
        h("span", { class: "muted small caption-note" },
          " (the student learnt from their averaged word log-probabilities: the Teacher columns above are the ensemble)")),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Member"), h("th", { scope: "col" }, "What it is"),
        splits.map((split) => h("th", { scope: "col", class: "num" }, `F1 ${split} (%)`)),
        h("th", { scope: "col", class: "num" }, "Parameters"), h("th", { scope: "col", class: "num" }, "Size on disk"))),
      h("tbody", {},
        members.map((m) => row(`#${m.member}`, memberSource(result.config, m.member), m, false)),
        row("Ensemble", "all of them", t, true)),
    ),
  );
}

/** Headline figures: student F1 vs teacher F1 and the batch-1 speedup. */
export function headline(result) {
  const split = reportSplit(result.teacher);
  const members = teacherMembers(result).length;
  const figure = (label, value, note) =>
    h("div", { class: "figure" }, h("span", { class: "figure-value" }, value), h("span", { class: "figure-label" }, label),
      note ? h("span", { class: "figure-note" }, note) : null);
  return h(
    "div", { class: "figures" },
    figure(`student F1 (${split})`, fmtF1(result.student?.[split]?.f1)),
    figure(`teacher F1 (${split})`, fmtF1(result.teacher?.[split]?.f1), members ? `ensemble of ${members}` : null),
    figure("student speed, batch 1", fmtRatio(result.speedup?.batch_1, "faster", "slower")),
    figure("student size on disk", fmtRatio(
      result.teacher?.bytes_on_disk && result.student?.bytes_on_disk
        ? result.teacher.bytes_on_disk / result.student.bytes_on_disk : null, "smaller", "larger")),
  );
}

/** What distillation bought: the served student against the baseline (the same student trained alone,
 * same budget), which of the two is served and why, who taught the distilled one, and the report's warnings. */
export function gainPanel(result) {
  const split = reportSplit(result.teacher);
  const gain = result.distillation_gain?.[split];
  const warnings = result.warnings || [];
  if (!gain && !warnings.length) return null;
  const alone = typeof result.baseline?.[split]?.f1 === "number" ? result.baseline[split].f1 : null;
  const points = (x) => `${x > 0 ? "+" : ""}${(100 * x).toFixed(1)}`;
  const perType = gain ? Object.entries(gain.per_type || {}).map(([t, x]) => `${t} ${points(x)}`).join(", ") : "";
  return h(
    "div", { class: "gain-panel", "aria-label": "distillation gain" },
    gain ? h("p", { class: "gain-line" },
      h("strong", { class: gain.f1 > 0 ? "gain" : gain.f1 < 0 ? "loss" : "" },
        `Distillation gain: ${points(gain.f1)} F1 points on ${split}`),
      `: distilled ${fmtF1(alone === null ? null : alone + gain.f1)} against ${fmtF1(alone)} `,
      "for the same student trained alone, with the same budget",
      perType ? `; by type: ${perType}.` : ".") : null,
    result.served ? h("p", { class: "muted small served" }, `Served: ${result.served.reason}.`) : null,
    result.teaching ? h("p", { class: "muted small teaching" }, "Taught by ",
      result.teaching.by === "teacher_and_baseline" ? "the teacher and the baseline together" : "the teacher alone",
      `: ${result.teaching.reason}.`) : null,
    warnings.length ? h("ul", { class: "warnings", role: "alert" },
      warnings.map((w) => h("li", {}, `Warning: ${w}`))) : null,
  );
}
