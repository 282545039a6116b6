// One job, live: stage timeline, progress and ETA from its event stream, loss and dev-F1 curves,
// and once it has succeeded the teacher vs student comparison.

import { api, downloadLink, followEvents } from "./api.js";
import { analysisPanel } from "./analysis.js";
import { f1Table, gainPanel, headline, membersTable, sizeSpeedTable } from "./compare.js";
import {
  STAGES, TERMINAL, fill, fmtSeconds, fmtTime, h, progressBar, secondsBetween, showError, statusBadge, tagBadges,
} from "./util.js";

const COLORS = { teacher: "#c2410c", student: "#1d4ed8", baseline: "#6b7280" };
const STAGE_TEXT = {
  teacher: "Teacher training", labeling: "Labeling", student: "Student training",
  baseline: "Baseline (student alone)", evaluating: "Evaluating",
};

function lineChart(canvas, title, yTitle, percent) {
  const Chart = window.Chart;
  if (!Chart) return null;
  const dataset = (who) => ({
    label: who, data: [], borderColor: COLORS[who], backgroundColor: COLORS[who], tension: 0.2, pointRadius: 3,
    borderDash: who === "student" ? [] : [6, 3],
  });
  return new Chart(canvas, {
    type: "line",
    data: { datasets: [dataset("teacher"), dataset("student"), dataset("baseline")] },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: false,
      plugins: { title: { display: true, text: title }, legend: { position: "bottom", labels: { usePointStyle: true } } },
      scales: {
        x: { type: "linear", title: { display: true, text: "epoch (labeled passes)" }, ticks: { precision: 0 }, min: 1 },
        y: { title: { display: true, text: yTitle }, ...(percent ? { min: 0, max: 100 } : { beginAtZero: true }) },
      },
    },
  });
}

export async function jobPage(main, params, page, jobId) {
  const state = { job: null, stages: {}, logs: [], progress: null, ended: false, model: null, analysis: null };
  const title = h("h1", { tabindex: "-1" }, `Job ${jobId}`);
  const meta = h("p", { class: "muted meta" });
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-job" }, "Cancel job");
  // the job form, filled with this job's dataset, config, name and tags (jobs.js prefill)
  const clone = h("a", { class: "button secondary", href: `#/jobs?clone=${encodeURIComponent(jobId)}` }, "Clone and edit");
  const labels = h("p", { class: "record-labels" });
  const config = h("pre", { class: "preview job-config" });
  const actionNote = h("span", { class: "muted", role: "status" });
  const timeline = h("ol", { class: "timeline", "aria-label": "stages" });
  const progress = h("div", { class: "progress-block" });
  const error = h("div", { class: "error-box", role: "alert", hidden: true });
  const results = h("section", { class: "results", "aria-labelledby": "results-title", hidden: true });
  const lossCanvas = h("canvas", { role: "img", "aria-label": "training loss per epoch, teacher, student and baseline" });
  const f1Canvas = h("canvas", { role: "img", "aria-label": "dev F1 per epoch, teacher, student and baseline" });
  const curveTable = h("div", { class: "curve-numbers" });
  const log = h("ol", { class: "log" });
  const streamNote = h("p", { class: "muted small", role: "status" });

  fill(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "← Jobs")),
    title, labels, meta,
    h("div", { class: "actions" }, cancel, clone, actionNote),
    h("details", { class: "config-box" }, h("summary", {}, "Config as submitted"), config),
    error,
    h("section", { "aria-labelledby": "progress-title" },
      h("h2", { id: "progress-title" }, "Progress"), timeline, progress, streamNote),
    results,
    h("section", { "aria-labelledby": "curves-title" },
      h("h2", { id: "curves-title" }, "Training curves"),
      h("div", { class: "charts" },
        h("figure", { class: "chart-box" }, lossCanvas),
        h("figure", { class: "chart-box" }, f1Canvas)),
      h("details", {}, h("summary", {}, "Curve figures"), curveTable)),
    h("section", { "aria-labelledby": "log-title" },
      h("details", {}, h("summary", {}, h("h2", { id: "log-title" }, "Event log")), log)));

  const lossChart = lineChart(lossCanvas, "Training loss", "mean loss", false);
  const f1Chart = lineChart(f1Canvas, "Dev F1", "F1 (%)", true);
  page.onLeave(() => { lossChart?.destroy(); f1Chart?.destroy(); });
  const curves = { teacher: [], student: [], baseline: [] };

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      state.job = await api(`/jobs/${jobId}/cancel`, { method: "POST" });
      actionNote.textContent = state.job.status === "cancelled" ? "Cancelled." : "Cancel requested: the job stops within seconds.";
      render();
    } catch (err) {
      actionNote.textContent = err.message;
      cancel.disabled = TERMINAL.has(state.job?.status);
    }
  });

  function renderTimeline() {
    const job = state.job;
    const current = job.stage ? STAGES.indexOf(job.stage) : -1;
    fill(timeline, STAGES.map((stage, i) => {
      let mark = "pending";
      if (job.status === "succeeded" || i < current) mark = "done";
      else if (i === current) mark = job.status === "running" ? "active" : job.status === "queued" ? "pending" : job.status;
      const started = state.stages[stage];
      const next = STAGES.slice(i + 1).map((s) => state.stages[s]).find(Boolean);
      const end = next || (mark !== "active" ? job.finished_at : null);
      const secs = started && (mark === "done" || mark === "active" || TERMINAL.has(mark)) ? secondsBetween(started, end) : null;
      return h("li", { class: `stage stage-${mark}`, dataset: { stage, state: mark }, "aria-current": mark === "active" ? "step" : null },
        h("span", { class: "stage-dot", "aria-hidden": "true" }),
        h("span", { class: "stage-name" }, STAGE_TEXT[stage]),
        h("span", { class: "stage-time muted" }, mark === "active" ? `running ${secs !== null ? fmtSeconds(secs) : ""}`
          : secs !== null ? fmtSeconds(secs) : mark === "pending" ? "waiting" : mark));
    }));
  }

  function renderProgress() {
    const job = state.job;
    const p = state.progress || job.progress || {};
    const fraction = job.status === "succeeded" ? 1 : p.fraction || 0;
    const bits = [`${Math.round(100 * fraction)}%`];
    if (job.status === "running" && p.stage) {
      bits.push(`${p.stage}${p.total ? ` step ${p.step}/${p.total}` : ""}${p.epoch ? `, epoch ${p.epoch} done` : ""}`);
      if (p.values && typeof p.values.loss === "number") bits.push(`loss ${p.values.loss.toFixed(3)}`);
    }
    let eta = "";
    if (job.status === "running") eta = typeof p.eta_s === "number" ? `about ${fmtSeconds(p.eta_s)} left` : "estimating time left…";
    else if (job.status === "queued") eta = "waiting for a worker";
    else if (job.started_at) eta = `took ${fmtSeconds(secondsBetween(job.started_at, job.finished_at))}`;
    fill(progress,
      progressBar(fraction, "job progress"),
      h("p", { class: "progress-text" }, h("span", { id: "progress-figures" }, bits.join(" · ")),
        h("span", { id: "eta", class: "eta" }, eta)));
  }

  function renderResults() {
    const job = state.job;
    const report = state.model;  // a finished job's report is its model's record
    if (job.status !== "succeeded" || !report) {
      results.hidden = true;
      return;
    }
    results.hidden = false;
    fill(results,
      h("h2", { id: "results-title" }, "Teacher vs student"),
      headline(report),
      gainPanel(report),
      h("div", { class: "two-col" }, f1Table(report), sizeSpeedTable(report)),
      membersTable(report),
      state.analysis ||= analysisPanel(job.model_id, page.signal),
      h("div", { class: "actions" },
        job.model_id ? h("a", { class: "button", href: `#/models?model=${job.model_id}` }, `Model ${job.model_id}`) : null,
        job.model_id ? h("a", { class: "button", href: `#/try?model=${job.model_id}` }, "Try it") : null,
        job.model_id ? downloadLink(`/models/${job.model_id}/download`, `${job.model_id}.tar.gz`, "Download the student") : null,
        job.model_id ? downloadLink(`/models/${job.model_id}/download?which=teacher`, `${job.model_id}-teacher.tar.gz`,
          "Download the teacher") : null));
  }

  function render() {
    const job = state.job;
    if (!job) return;
    fill(labels, job.name ? h("span", { class: "record-name" }, job.name) : null, tagBadges(job.tags));
    labels.hidden = !job.name && !job.tags?.length;
    config.textContent = JSON.stringify(job.config, null, 2);
    fill(meta, statusBadge(job.status), ` dataset ${job.dataset_id} · created ${fmtTime(job.created_at)}`,
      job.worker ? ` · worker ${job.worker}` : "", job.attempts > 1 ? ` · attempt ${job.attempts}` : "");
    cancel.disabled = TERMINAL.has(job.status);
    cancel.hidden = TERMINAL.has(job.status);
    if (job.cancel_requested && !TERMINAL.has(job.status)) actionNote.textContent = "Cancel requested: the job stops within seconds.";
    else if (TERMINAL.has(job.status)) actionNote.textContent = "";
    if (job.status === "failed" && job.error) {
      error.hidden = false;
      fill(error, h("h2", {}, "The job failed"), h("pre", {}, job.error));
    } else if (job.status === "cancelled") {
      error.hidden = false;
      fill(error, h("p", {}, "This job was cancelled."));
    } else {
      error.hidden = true;
    }
    renderTimeline();
    renderProgress();
    renderResults();
  }

  function renderCurves() {
    for (const [chart, key, scale] of [[lossChart, "loss", 1], [f1Chart, "dev_f1", 100]]) {
      if (!chart) continue;
      chart.data.datasets.forEach((ds) => {
        ds.data = curves[ds.label].filter((m) => typeof m[key] === "number").map((m) => ({ x: m.epoch, y: m[key] * scale }));
      });
      chart.update("none");
    }
    const rows = ["teacher", "student", "baseline"].flatMap((who) => curves[who].map((m) =>
      h("tr", {}, h("td", {}, who), h("td", { class: "num" }, m.epoch), h("td", { class: "num" }, m.loss?.toFixed(4) ?? "–"),
        h("td", { class: "num" }, typeof m.dev_f1 === "number" ? (100 * m.dev_f1).toFixed(1) : "–"))));
    fill(curveTable, rows.length
      ? h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Model", "Epoch", "Loss", "Dev F1"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows)))
      : h("p", { class: "muted" }, "No epoch has finished yet."));
  }

  let refreshing = null;
  async function refreshJob() {
    if (refreshing) return refreshing;
    refreshing = api(`/jobs/${jobId}`, { signal: page.signal })
      .then(async (job) => {
        if (job.model_id && state.model?.id !== job.model_id) {
          state.model = await api(`/models/${job.model_id}`, { signal: page.signal });
        }
        state.job = job;
        if (TERMINAL.has(job.status)) state.progress = null;
        render();
      })
      .catch((err) => { if (err.name !== "AbortError") showError(error, err); })
      .finally(() => { refreshing = null; });
    return refreshing;
  }

  function onEvent(event) {
    const d = event.data || {};
    if (event.type === "progress") {
      state.progress = d;
      if (state.job && state.job.status === "running") renderProgress();
    } else if (event.type === "stage") {
      state.stages[d.stage] = event.time;
      state.progress = { ...(state.progress || {}), stage: d.stage, step: 0, total: d.total, epoch: null };
      if (state.job) { state.job.stage = d.stage; renderTimeline(); renderProgress(); }
      refreshJob();
    } else if (event.type === "epoch") {
      if (d.stage in curves) { curves[d.stage].push({ epoch: d.epoch, ...d.metrics }); renderCurves(); }
    } else if (event.type === "status") {
      refreshJob();
    }
    if (event.type !== "progress") {
      const text = event.type === "status" ? `status: ${d.status}${d.error ? ` (${d.error})` : ""}`
        : event.type === "stage" ? `stage: ${d.stage}`
        : event.type === "epoch" ? `${d.stage} epoch ${d.epoch}: ${Object.entries(d.metrics || {})
          .filter(([k]) => ["loss", "dev_f1"].includes(k)).map(([k, v]) => `${k} ${Number(v).toFixed(4)}`).join(", ")}`
        : d.message;
      log.append(h("li", {}, h("time", { datetime: event.time }, new Date(event.time).toLocaleTimeString()), " ", text));
    }
  }

  await refreshJob();
  if (!state.job) return;
  renderCurves();
  // the active stage's "running 12 s" counts on between events; stops with the page
  const ticker = setInterval(() => { if (state.job?.status === "running") renderTimeline(); }, 1000);
  page.signal.addEventListener("abort", () => clearInterval(ticker));
  streamNote.textContent = TERMINAL.has(state.job.status) ? "" : "Live: following the job's event stream.";
  followEvents(jobId, onEvent, {
    signal: page.signal,
    onError: (err) => { streamNote.textContent = `Event stream interrupted (${err.message}); retrying…`; },
  }).then(() => {
    if (page.signal.aborted) return;
    streamNote.textContent = "";
    refreshJob();
  });
}
