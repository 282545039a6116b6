"""Collect the benchmark's results into JSON, tables and plots.

    python bench/report.py [--runs runs/bench] [--docs docs]

reads every ``result.json`` under ``--runs`` (written by bench/run.py), writes
``docs/benchmarks/results.json``, ``docs/benchmarks/f1_vs_labeled.png`` and
``docs/benchmarks/speed_size.png``, and replaces the part of ``docs/BENCHMARKS.md`` between
``<!-- results:start -->`` and ``<!-- results:end -->`` with the tables (the prose around them
is kept).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

START, END = "<!-- results:start -->", "<!-- results:end -->"
MODES = {"alone_novec": "student alone, no GloVe", "alone": "student alone", "kd": "student KD",
         "kd_pseudo": "student KD + pseudo-labels"}
FULL_ROWS = {"teacher": "MiniLM teacher", "alone_novec": "student alone, no GloVe",
             "alone": "student alone", "kd": "student KD", "spacy": "spaCy CNN NER"}


def collect(runs: Path) -> dict[str, Any]:
    files = sorted(runs.rglob("result.json"))
    return {str(p.parent.relative_to(runs)): json.loads(p.read_text()) for p in files}


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def full_table(results: dict[str, Any], corpus: str) -> list[str]:
    rows = {k: results.get(f"{corpus}/full/{k}") for k in FULL_ROWS}
    rows = {k: v for k, v in rows.items() if v}
    if not rows:
        return []
    types = sorted({t for r in rows.values() for t in r["test"]["per_type"]})
    teacher_f1 = rows["teacher"]["test"]["f1"] if "teacher" in rows else None
    head = ["model", "test F1", "% of teacher", "dev F1", *types, "parameters", "MB on disk", "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, r in rows.items():
        pct = f"{100 * r['test']['f1'] / teacher_f1:.1f}%" if teacher_f1 else "–"
        cells = [
            FULL_ROWS[key], f"**{_f(r['test']['f1'])}**", pct, _f(r.get("dev_f1")),
            *(_f(r["test"]["per_type"].get(t, {}).get("f1")) for t in types),
            f"{r['parameters']:,}", f"{r['bytes_on_disk'] / 1e6:.1f}", f"{r['seconds'] / 60:,.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def speed_table(results: dict[str, Any]) -> list[str]:
    speed = results.get("conll/speed", {}).get("threads", {})
    if not speed:
        return []
    head = ["model"] + [f"{k} ({n} thr.)" for n in speed for k in ("w/s b32", "×", "w/s b1", "×")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in next(iter(speed.values())):
        cells = [FULL_ROWS.get(name, name)]
        for by_model in speed.values():
            m = by_model[name]
            for key in ("batch_32", "batch_1"):
                cells += [f"{m['words_per_second'][key]:,.0f}", f"{m['ratio_to_first'][key]:.1f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def low_resource(results: dict[str, Any]) -> dict[int, dict[str, list[float]]]:
    """labeled size -> model -> test F1 of each seed."""
    out: dict[int, dict[str, list[float]]] = {}
    for key, r in results.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[:2] == ["conll", "low"] and "test" in r:
            size = int(parts[2].split("-")[0])
            out.setdefault(size, {}).setdefault(parts[3], []).append(r["test"]["f1"])
    return dict(sorted(out.items()))


def _mean_spread(xs: list[float] | None) -> str:
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f} (n={len(xs)})"


def low_table(low: dict[int, dict[str, list[float]]]) -> list[str]:
    if not low:
        return []
    peer = any("spacy" in m for m in low.values())  # the quick run trains the peer here
    head = ["labeled", "teacher", *MODES.values(), *(["spaCy"] * peer), "KD+PL / teacher", "KD+PL − alone"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size, m in low.items():
        mean = {k: statistics.mean(v) for k, v in m.items()}
        ratio = gain = "–"
        if {"kd_pseudo", "teacher"} <= set(mean):
            ratio = f"{100 * mean['kd_pseudo'] / mean['teacher']:.1f}%"
        if {"kd_pseudo", "alone"} <= set(mean):
            gain = f"{100 * (mean['kd_pseudo'] - mean['alone']):+.1f}"
        lines.append("| " + " | ".join([f"{size:,}", _mean_spread(m.get("teacher")),
                                         *(_mean_spread(m.get(k)) for k in MODES),
                                         *([_mean_spread(m.get("spacy"))] * peer), ratio, gain]) + " |")
    return lines


def plots(results: dict[str, Any], low: dict[int, dict[str, list[float]]], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    made = []
    if low:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for key, label in {"teacher": "MiniLM teacher", **MODES}.items():
            sizes = [n for n in low if key in low[n]]
            if sizes:
                means = [statistics.mean(low[n][key]) for n in sizes]
                ax.plot(sizes, means, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xticks(list(low), [str(n) for n in low])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("labeled CoNLL-2003 sentences (rest of train unlabeled)")
        ax.set_ylabel("test F1")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / "f1_vs_labeled.png", dpi=110)
        plt.close(fig)
        made.append("f1_vs_labeled.png")
    speed = results.get("conll/speed", {}).get("threads", {})
    if speed:
        names = list(next(iter(speed.values())))
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
        height = 0.8 / len(speed)
        panels = ((axes[0], "batch_32", "words/s, batch 32"), (axes[1], "batch_1", "words/s, batch 1"))
        for ax, key, title in panels:
            for j, (n, by_model) in enumerate(speed.items()):
                vals = [by_model[m]["words_per_second"][key] for m in names]
                ax.barh([i + j * height for i in range(len(names))], vals, height=height,
                        label=f"{n} thread{'s' if n != '1' else ''}")
            ax.set_yticks([i + height * (len(speed) - 1) / 2 for i in range(len(names))],
                          [FULL_ROWS.get(m, m) for m in names])
            ax.set_title(title)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axes[0].legend(fontsize=8)
        axes[1].set_yticklabels([])
        params = [results.get(f"conll/full/{n}", {}).get("parameters", 0) / 1e6 for n in names]
        axes[2].barh(range(len(names)), params, color="#a87848")
        axes[2].set_yticks(range(len(names)), [])
        axes[2].set_title("parameters (millions)")
        fig.tight_layout()
        fig.savefig(folder / "speed_size.png", dpi=110)
        plt.close(fig)
        made.append("speed_size.png")
    return made


def render(results: dict[str, Any], images: list[str]) -> str:
    out = []
    conll = full_table(results, "conll")
    if conll:
        out += ["### CoNLL-2003, full training set (14,041 sentences)", "", *conll, ""]
    low = low_table(low_resource(results))
    if low:
        out += ["### CoNLL-2003, low-resource (a labeled subset; the rest of train as unlabeled text)", "",
                *low, ""]
    if "f1_vs_labeled.png" in images:
        out += ["![F1 against labeled-set size](benchmarks/f1_vs_labeled.png)", ""]
    speed = speed_table(results)
    if speed:
        out += ["### Speed on CoNLL-2003 test, measured side by side (× = ratio to the teacher)", "",
                *speed, ""]
    if "speed_size.png" in images:
        out += ["![Speed and size side by side](benchmarks/speed_size.png)", ""]
    ncbi = full_table(results, "ncbi")
    if ncbi:
        out += ["### NCBI-disease, full training set (5,424 sentences)", "",
                "Speeds for NCBI are not measured separately (same models, longer sentences).", "", *ncbi, ""]
    seconds = sum(r.get("seconds", 0) for r in results.values())
    out += [f"Training and evaluation time summed over all units: {seconds / 60:,.0f} min."]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=Path("runs/bench"))
    p.add_argument("--docs", type=Path, default=Path("docs"))
    args = p.parse_args()
    results = collect(args.runs)
    folder = args.docs / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    images = plots(results, low_resource(results), folder)
    page = args.docs / "BENCHMARKS.md"
    text = page.read_text() if page.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    page.write_text(f"{before}{START}\n{render(results, images)}\n{END}{after}")
    print(f"wrote {page}, {folder / 'results.json'} and {len(images)} plots from {len(results)} results")


if __name__ == "__main__":
    main()
