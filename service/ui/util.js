// Small DOM and formatting helpers shared by the pages.

/** h("p", {class: "x", onclick: fn}, "text", child, [more]) builds an element. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "style" && typeof value === "object") {
      for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v);
    }
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

/** Replace what `node` holds. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const fmtInt = (n) => (n === undefined || n === null ? "–" : Math.round(n).toLocaleString("en"));

export function fmtF1(x) {
  return typeof x === "number" ? (100 * x).toFixed(1) : "–";
}

export function fmtBytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

export function fmtSeconds(s) {
  if (typeof s !== "number" || !isFinite(s)) return "–";
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Seconds between two ISO times (now when `end` is missing). */
export function secondsBetween(start, end) {
  if (!start) return null;
  return ((end ? new Date(end) : new Date()) - new Date(start)) / 1000;
}

export function fmtRatio(r, more, less) {
  if (typeof r !== "number" || !isFinite(r) || r <= 0) return "–";
  return r >= 1 ? `${r >= 10 ? Math.round(r) : r.toFixed(1)}× ${more}` : `${(1 / r).toFixed(1)}× ${less}`;
}

/** A stable colour per entity type: fixed ones for the usual types, a hash for the rest. */
const TYPE_HUES = { PER: 210, ORG: 30, LOC: 140, MISC: 280, GPE: 170, DATE: 330, NORP: 60 };
export function typeHue(label) {
  if (label in TYPE_HUES) return TYPE_HUES[label];
  let hash = 0;
  for (const c of label) hash = (hash * 31 + c.charCodeAt(0)) % 360;
  return hash;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
export const STAGES = ["teacher", "labeling", "baseline", "student", "evaluating"];

export function statusBadge(status) {
  return h("span", { class: `badge badge-${status}` }, status);
}

/** A progress bar with its figure; `fraction` in 0..1. */
export function progressBar(fraction, label) {
  const pct = Math.round(100 * (fraction || 0));
  return h(
    "div",
    { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-valuenow": String(pct), "aria-label": label || "progress" },
    h("div", { class: "bar-fill", style: { width: `${pct}%` } }),
  );
}

/** Random key for Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
export function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `ui-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Show an error (or clear it with null) in a message box. */
export function showError(box, err) {
  if (!err) {
    box.hidden = true;
    fill(box);
    return;
  }
  box.hidden = false;
  fill(box, err.message || String(err));
}

/** A job's or model's tags as small badges (nothing when it has none). */
export function tagBadges(tags) {
  return (tags || []).map((t) => h("span", { class: "chip chip-tag", dataset: { tag: t } }, t));
}

/** Parse a tags box ("ner, clinical  v2") into a list: commas or spaces between tags. */
export function parseTags(text) {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}

/**
 * The tag and name filters of the job and model lists: a tag select (filled with `fillTags`) and a
 * name search box; `onChange(query)` gets the query string to add ("&tag=x&q=y", or "").
 */
export function labelFilters(idPrefix, onChange) {
  const tag = h("select", { id: `${idPrefix}-tag` }, h("option", { value: "" }, "any"));
  const q = h("input", { id: `${idPrefix}-q`, type: "search", placeholder: "part of a name", size: "14" });
  const query = () => (tag.value ? `&tag=${encodeURIComponent(tag.value)}` : "")
    + (q.value.trim() ? `&q=${encodeURIComponent(q.value.trim())}` : "");
  let timer = null;
  tag.addEventListener("change", () => onChange(query()));
  q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => onChange(query()), 250); });
  const node = h("div", { class: "inline-field label-filters" },
    h("label", { for: `${idPrefix}-tag` }, "Filter by tag"), tag,
    h("label", { for: `${idPrefix}-q` }, "Name contains"), q);
  const seen = new Set();
  /** Offer the tags of `records` too (a filtered list shows fewer: the tags seen before stay). */
  const fillTags = (records) => {
    const before = seen.size;
    records.forEach((r) => (r.tags || []).forEach((t) => seen.add(t)));
    if (seen.size === before) return;
    const chosen = tag.value;
    fill(tag, h("option", { value: "" }, "any"), [...seen].sort().map((t) => h("option", { value: t }, t)));
    tag.value = chosen;
  };
  return { node, query, fillTags };
}
