"""Collect the benchmark's results into JSON, tables and plots.

    python bench/report.py [--runs runs/bench] [--docs docs] [--merge]

reads every ``result.json`` under ``--runs`` (written by bench/run.py), writes
``docs/benchmarks/results.json``, ``docs/benchmarks/f1_vs_labeled.png`` and
``docs/benchmarks/speed_size.png``, and replaces the part of ``docs/BENCHMARKS.md`` between
``<!-- results:start -->`` and ``<!-- results:end -->`` with the tables (the prose around them
is kept).

Units are ``<setting>/<model>`` (``conll/full/teacher``, ``conll/low/1500-s1/kd_pseudo-s2``).
Every student figure is the mean over its seeds (``-sK``) with the sample standard deviation;
a student unit without ``-sK`` (results from before seeds) counts as seed 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START, END = "<!-- results:start -->", "<!-- results:end -->"
CORPORA = {"conll": "CoNLL-2003", "ncbi": "NCBI-disease", "btc": "Broad Twitter Corpus"}
LABELS = {"mixed": "student alone or distilled, by seed",
          "teacher": "MiniLM teacher", "alone_novec": "student alone, no GloVe", "alone": "student alone",
          "kd": "student KD", "kd_pseudo": "student KD + pseudo-labels", "spacy": "spaCy CNN NER"}
FULL_ROWS = ("teacher", "alone_novec", "alone", "kd", "spacy")
DEAD_TYPE_TEACHER_F1 = 0.3  # a type the teacher finds at least this well should not be lost
SERVED_SHARE_TARGET = 90.0  # BTC: the served student's F1 as % of the teacher's

Run = dict[str, Any]
Models = dict[str, list[Run]]  # model -> its runs, by seed
Settings = dict[str, Models]  # setting -> models


# ---------------------------------------------------------------- reading


def collect(runs: Path) -> dict[str, Any]:
    """Every ``result.json`` under ``runs``, keyed by its unit (the folder, relative to ``runs``)."""
    files = sorted(runs.rglob("result.json"))
    return {str(p.parent.relative_to(runs)): json.loads(p.read_text()) for p in files}


def split_unit(unit: str) -> tuple[str, str, int | None]:
    """``conll/low/150-s1/kd_pseudo-s2`` -> (``conll/low/150-s1``, ``kd_pseudo``, 2); no -sK: None."""
    setting, _, name = unit.rpartition("/")
    model, sep, seed = name.rpartition("-s")
    return (setting, model, int(seed)) if sep and seed.isdigit() else (setting, name, None)


def group(results: dict[str, Any]) -> Settings:
    """Scored results by setting and model, each model's runs ordered by seed. An old unit without
    ``-sK`` is seed 1, unless a ``-s1`` unit of the same model exists."""
    seeded: dict[str, dict[str, dict[int, Run]]] = {}
    units = sorted(results, key=lambda u: split_unit(u)[2] is not None)  # old names first: -sK wins
    for unit in units:
        if not isinstance(results[unit].get("test"), dict):
            continue
        setting, model, seed = split_unit(unit)
        seeded.setdefault(setting, {}).setdefault(model, {})[seed or 1] = results[unit]
    return {s: {m: [runs[k] for k in sorted(runs)] for m, runs in models.items()}
            for s, models in seeded.items()}


def parse_setting(setting: str) -> tuple[str, int | None, int]:
    """``conll/low/1500-s1`` -> (``conll``, 1500, 1); ``ncbi/full`` -> (``ncbi``, None, 0)."""
    corpus, kind, subset_name, *_ = [*setting.split("/"), "", ""]
    if kind != "low" or not subset_name:
        return corpus, None, 0
    size, _, subset = subset_name.partition("-s")
    return corpus, int(size), int(subset or 1)


def setting_order(setting: str) -> tuple[int, int, int]:
    corpus, size, subset = parse_setting(setting)
    rank = list(CORPORA).index(corpus) if corpus in CORPORA else len(CORPORA)
    return rank, -1 if size is None else size, subset


def labeled_title(setting: str) -> str:
    """``conll/low/1500-s1`` -> ``1,500``; another subset seed is named."""
    _, size, subset = parse_setting(setting)
    return "full" if size is None else f"{size:,}" + (f" (subset {subset})" if subset != 1 else "")


def setting_title(setting: str) -> str:
    corpus, size, _ = parse_setting(setting)
    return f"{CORPORA.get(corpus, corpus)}, {labeled_title(setting)}" + (" labeled" if size else "")


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of one figure over seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.sd:.3f}" if self.n > 1 else f"{self.mean:.3f}"


def stat(runs: Iterable[Run], figure: Callable[[Run], float]) -> Stat:
    return Stat(tuple(figure(r) for r in runs))


def f1_stat(runs: Iterable[Run]) -> Stat:
    return stat(runs, lambda r: r["test"]["f1"])


def type_f1(runs: Iterable[Run], entity_type: str) -> Stat:
    return stat(runs, lambda r: r["test"]["per_type"].get(entity_type, {}).get("f1", 0.0))


def verdict(alone: Stat, distilled: Stat) -> str:
    """"gain" ("loss") when the means differ by more than the larger of the two spreads."""
    if min(alone.n, distilled.n) < 2:
        return "n=1"
    diff = distilled.mean - alone.mean
    if abs(diff) <= max(alone.sd, distilled.sd):
        return "within spread"
    return "gain" if diff > 0 else "loss"


@dataclass(frozen=True)
class Gain:
    """A setting's distilled student (KD on full settings, KD + pseudo-labels on low-resource ones)
    against the student trained alone, and the better of the two against the teacher."""

    setting: str
    distilled_mode: str
    alone: list[Run]
    distilled: list[Run]
    teacher: Run | None

    @property
    def points(self) -> float:
        return 100 * (f1_stat(self.distilled).mean - f1_stat(self.alone).mean)

    @property
    def verdict(self) -> str:
        return verdict(f1_stat(self.alone), f1_stat(self.distilled))

    @property
    def served(self) -> list[Run]:
        """The students a job would serve: for each seed, the distilled one unless the one trained
        alone has the higher dev F1 (as ``tagdistill.pipeline.choose_served`` does; test is not used)."""
        pairs = zip(self.alone, self.distilled, strict=False)
        return [d if d["dev_f1"] >= a["dev_f1"] else a for a, d in pairs]

    @property
    def served_mode(self) -> str:
        """Which student the jobs would serve: a mode, or "mixed" when the seeds disagree."""
        modes = {r["mode"] for r in self.served}
        return modes.pop() if len(modes) == 1 else "mixed"

    @property
    def served_share(self) -> float | None:
        """The served student's mean test F1 as % of the teacher's."""
        if self.teacher is None or not self.teacher["test"]["f1"]:
            return None
        return 100 * f1_stat(self.served).mean / self.teacher["test"]["f1"]

    @property
    def dead_types(self) -> list[str] | None:
        """Entity types the served student never gets right (mean F1 0) though the teacher does."""
        if self.teacher is None:
            return None
        return [t for t, s in sorted(self.teacher["test"]["per_type"].items())
                if s["f1"] > DEAD_TYPE_TEACHER_F1 and type_f1(self.served, t).mean == 0]


def taught_by(runs: list[Run]) -> str:
    """", co-taught" when the teacher and the same seed's student alone taught every one of ``runs``
    (``tagdistill.pipeline.co_teach``), ", co-taught in n of m" when some; "" when the teacher alone did."""
    n = sum(r.get("teaching", {}).get("by") == "teacher_and_baseline" for r in runs)
    return "" if not n else ", co-taught" if n == len(runs) else f", co-taught in {n} of {len(runs)}"


def gain(setting: str, models: Models) -> Gain | None:
    mode = "kd" if parse_setting(setting)[1] is None else "kd_pseudo"
    if "alone" not in models or mode not in models:
        return None
    teacher = models.get("teacher", [None])[0]
    return Gain(setting, mode, models["alone"], models[mode], teacher)


def gains(settings: Settings) -> list[Gain]:
    found = (gain(s, settings[s]) for s in sorted(settings, key=setting_order))
    return [g for g in found if g is not None]


# ---------------------------------------------------------------- tables


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}%"


def _table(head: list[str], rows: Iterable[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(row) + " |" for row in rows)]


def full_table(models: Models) -> list[str]:
    """Teacher, students and peer of one full setting: F1 (mean ± sd), per type, size, time."""
    teacher_f1 = models["teacher"][0]["test"]["f1"] if "teacher" in models else None
    types = sorted({t for runs in models.values() for r in runs for t in r["test"]["per_type"]})
    head = ["model", "test F1", "% of teacher", "dev F1", *types, "parameters", "MB on disk", "train min"]
    rows = []
    for key in (k for k in FULL_ROWS if k in models):
        runs = models[key]
        f1 = f1_stat(runs)
        rows.append([
            LABELS[key], f"**{f1}**", _pct(100 * f1.mean / teacher_f1 if teacher_f1 else None),
            _f(stat(runs, lambda r: r.get("dev_f1", 0.0)).mean),
            *(_f(type_f1(runs, t).mean) for t in types),
            f"{runs[0]['parameters']:,}", f"{runs[0]['bytes_on_disk'] / 1e6:.1f}",
            f"{stat(runs, lambda r: r['seconds']).mean / 60:,.1f}",
        ])
    return _table(head, rows)


def low_table(settings: Settings, corpus: str) -> list[str]:
    """One row per labeled size of ``corpus``: teacher, alone, KD + pseudo-labels and the gain."""
    names = sorted((s for s in settings if parse_setting(s)[0] == corpus and parse_setting(s)[1]),
                   key=setting_order)
    columns = ["teacher", "alone", "kd_pseudo", *["spacy"] * any("spacy" in settings[s] for s in names)]
    head = ["labeled", *(LABELS[c] for c in columns), "KD+PL / teacher", "distillation gain (points)",
            "verdict"]
    rows = []
    for name in names:
        models, g = settings[name], gain(name, settings[name])
        ratio = 100 * f1_stat(g.distilled).mean / g.teacher["test"]["f1"] if g and g.teacher else None
        rows.append([labeled_title(name), *(str(f1_stat(models[c])) if c in models else "–" for c in columns),
                     _pct(ratio), f"{g.points:+.1f}" if g else "–", g.verdict if g else "–"])
    return _table(head, rows) if rows else []


def gain_table(found: list[Gain]) -> list[str]:
    """Distilled against alone on every setting, and the served student against the teacher."""
    head = ["setting", "student alone", "distilled", "gain (points)", "verdict", "served / teacher",
            f"types at 0 (teacher > {DEAD_TYPE_TEACHER_F1})"]
    rows = []
    for g in found:
        dead = g.dead_types
        rows.append([
            setting_title(g.setting), str(f1_stat(g.alone)),
            f"{f1_stat(g.distilled)} ({'KD' if g.distilled_mode == 'kd' else 'KD+PL'}"
            f"{taught_by(g.distilled)})",
            f"{g.points:+.1f}", g.verdict,
            f"{_pct(g.served_share)} ({LABELS[g.served_mode].removeprefix('student ')})",
            "–" if dead is None else ", ".join(dead) or "none",
        ])
    return _table(head, rows) if rows else []


@dataclass(frozen=True)
class Target:
    """A goal checked on some settings: each measured one passes or misses."""

    text: str
    settings: tuple[str, ...]
    check: Callable[[Gain], tuple[bool, str]]  # -> (met, what was measured)


def _no_worse(g: Gain) -> tuple[bool, str]:
    met = g.verdict != "loss" and (g.verdict != "n=1" or g.points >= 0)
    return met, f"{g.points:+.1f} ({g.verdict})"


def _at_least(points: float) -> Callable[[Gain], tuple[bool, str]]:
    return lambda g: (g.points >= points, f"{g.points:+.1f}")


def _share(g: Gain) -> tuple[bool, str]:
    share = g.served_share
    return share is not None and share >= SERVED_SHARE_TARGET, f"{_pct(share)} ({LABELS[g.served_mode]})"


def _served_f1(at_least: float) -> Callable[[Gain], tuple[bool, str]]:
    def check(g: Gain) -> tuple[bool, str]:
        served = f1_stat(g.served)
        return served.mean >= at_least, f"{served} ({LABELS[g.served_mode]})"
    return check


def _no_dead_type(g: Gain) -> tuple[bool, str]:
    dead = g.dead_types
    return dead == [], "teacher missing" if dead is None else ", ".join(dead) or "none"


TARGETS = (
    Target("full settings: KD no worse than alone beyond the spread (one seed: no worse)",
           ("conll/full", "ncbi/full", "btc/full"), _no_worse),
    Target("CoNLL 1,500 and 3,000 labels: KD+PL − alone ≥ +2.0 points",
           ("conll/low/1500-s1", "conll/low/3000-s1"), _at_least(2.0)),
    Target("CoNLL 150 labels: KD+PL − alone ≥ +8.0 points", ("conll/low/150-s1",), _at_least(8.0)),
    Target("CoNLL full: KD − alone ≥ +1.0 points (issue 11)", ("conll/full",), _at_least(1.0)),
    Target("CoNLL full: served student ≥ 0.890 test F1 (issue 11)", ("conll/full",), _served_f1(0.890)),
    Target(f"BTC: served student ≥ {SERVED_SHARE_TARGET:.0f}% of the teacher's F1",
           ("btc/full", "btc/low/500-s1"), _share),
    Target(f"BTC: no entity type at F1 0 where the teacher's is above {DEAD_TYPE_TEACHER_F1}",
           ("btc/full", "btc/low/500-s1"), _no_dead_type),
)


def check_target(target: Target, by_setting: dict[str, Gain]) -> tuple[str, str]:
    """(what was measured on each setting, "pass", "miss", "incomplete" or "not run")."""
    measured, met = [], []
    for setting in target.settings:
        g = by_setting.get(setting)
        ok, what = target.check(g) if g else (None, "not run")
        measured.append(f"{setting_title(setting)}: {what}")
        if ok is not None:
            met.append(ok)
    if not met:
        return "; ".join(measured), "not run"
    if not all(met):
        return "; ".join(measured), "miss"
    return "; ".join(measured), "pass" if len(met) == len(target.settings) else "incomplete"


def target_table(found: list[Gain]) -> list[str]:
    by_setting = {g.setting: g for g in found}
    return _table(["target", "measured", ""], ([t.text, *check_target(t, by_setting)] for t in TARGETS))


def model_label(name: str) -> str:
    """``kd-s1`` or ``kd`` -> ``student KD``."""
    return LABELS.get(split_unit(name)[1], name)


def speed_table(results: dict[str, Any]) -> list[str]:
    speed = results.get("conll/speed", {}).get("threads", {})
    if not speed:
        return []
    head = ["model"] + [f"{k} ({n} thr.)" for n in speed for k in ("w/s b32", "×", "w/s b1", "×")]
    rows = []
    for name in next(iter(speed.values())):
        cells = [model_label(name)]
        for by_model in speed.values():
            m = by_model[name]
            for key in ("batch_32", "batch_1"):
                cells += [f"{m['words_per_second'][key]:,.0f}", f"{m['ratio_to_first'][key]:.1f}x"]
        rows.append(cells)
    return _table(head, rows)


# ---------------------------------------------------------------- plots


def plot_low(settings: Settings, path: Path) -> bool:
    """CoNLL test F1 against labeled-set size, means with the seeds' sd as error bars."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    low = sorted((s for s in settings if parse_setting(s)[0] == "conll" and parse_setting(s)[1]),
                 key=setting_order)
    if not low:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for key in ("teacher", "alone", "kd_pseudo"):
        points = [(parse_setting(s)[1], f1_stat(settings[s][key])) for s in low if key in settings[s]]
        if points:
            ax.errorbar([n for n, _ in points], [f.mean for _, f in points], yerr=[f.sd for _, f in points],
                        marker="o", capsize=3, label=LABELS[key])
    sizes = sorted({parse_setting(s)[1] for s in low})
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("labeled CoNLL-2003 sentences (rest of train unlabeled)")
    ax.set_ylabel("test F1 (mean ± sd over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _parameters(results: dict[str, Any], folder: str) -> float:
    """Parameters of the unit whose model folder the speed unit timed (0 when not found)."""
    for unit, r in results.items():
        if f"/{folder}".endswith(f"/{unit}/model"):
            return r.get("parameters", 0)
    return 0


def plot_speed(results: dict[str, Any], path: Path) -> bool:
    """Words/s at batch 32 and 1 for each thread count, and parameters, of the timed models."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    speed = results.get("conll/speed", {}).get("threads", {})
    if not speed:
        return False
    first = next(iter(speed.values()))
    names = list(first)
    labels = [model_label(m) for m in names]
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.6))
    height = 0.8 / len(speed)
    panels = ((axes[0], "batch_32", "words/s, batch 32"), (axes[1], "batch_1", "words/s, batch 1"))
    for ax, key, title in panels:
        for j, (n, by_model) in enumerate(speed.items()):
            vals = [by_model[m]["words_per_second"][key] for m in names]
            ax.barh([i + j * height for i in range(len(names))], vals, height=height,
                    label=f"{n} thread{'s' if n != '1' else ''}")
        ax.set_yticks([i + height * (len(speed) - 1) / 2 for i in range(len(names))], labels)
        ax.set_title(title)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(fontsize=8, loc="lower right")  # the teacher's short bars leave that corner free
    axes[1].set_yticklabels([])
    params = [_parameters(results, first[m].get("folder", "")) / 1e6 for m in names]
    axes[2].barh(range(len(names)), params, color="#a87848")
    axes[2].set_yticks(range(len(names)), [])
    axes[2].set_title("parameters (millions)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plots(results: dict[str, Any], settings: Settings, folder: Path) -> list[str]:
    """Write the plots that have data into ``folder``; their file names."""
    import matplotlib

    matplotlib.use("Agg")
    made = {"f1_vs_labeled.png": plot_low(settings, folder / "f1_vs_labeled.png"),
            "speed_size.png": plot_speed(results, folder / "speed_size.png")}
    return [name for name, ok in made.items() if ok]


# ---------------------------------------------------------------- page


def _section(title: str, lines: list[str], *notes: str) -> list[str]:
    return [f"### {title}", "", *(x for note in notes for x in (note, "")), *lines, ""] if lines else []


def _seed_note(settings: Settings) -> str:
    counts = sorted({len(runs) for models in settings.values() for m, runs in models.items()
                     if m not in ("teacher", "spacy")} or {0})
    seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return (f"Every student figure is the mean over its seeds ({seeds} per student) with the sample "
            "standard deviation (`mean ± sd`; a value alone is one seed). Teacher and spaCy: one run each. "
            "A verdict says *gain* (or *loss*) only when the two means differ by more than the larger "
            "spread, both with at least two seeds.")


def render(results: dict[str, Any], images: list[str]) -> str:
    settings = group(results)
    found = gains(settings)
    out = [_seed_note(settings), ""]
    for corpus, name in CORPORA.items():
        models = settings.get(f"{corpus}/full")
        if models:
            some = models.get("teacher") or next(iter(models.values()))
            count = some[0].get("train_sentences")
            size = f" ({count:,} sentences)" if count else ""
            out += _section(f"{name}, full training set{size}", full_table(models))
    for corpus, name in CORPORA.items():
        out += _section(f"{name}, low-resource (a labeled subset; the rest of train as unlabeled text)",
                        low_table(settings, corpus))
    if "f1_vs_labeled.png" in images:
        out += ["![F1 against labeled-set size](benchmarks/f1_vs_labeled.png)", ""]
    out += _section("Distillation gain per setting", gain_table(found),
                    "Distilled: KD on full settings, KD + pseudo-labels on low-resource ones. Served: for "
                    "each seed, the student a job would serve (the better dev F1), its mean test F1 as % "
                    "of the teacher's.")
    out += _section("Targets", target_table(found))
    out += _section("Speed on CoNLL-2003 test, measured side by side (× = ratio to the teacher)",
                    speed_table(results))
    if "speed_size.png" in images:
        out += ["![Speed and size side by side](benchmarks/speed_size.png)", ""]
    seconds = sum(r.get("seconds", 0) for r in results.values())
    out += [f"Training and evaluation time summed over all units: {seconds / 60:,.0f} min."]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=Path("runs/bench"))
    p.add_argument("--docs", type=Path, default=Path("docs"))
    p.add_argument("--merge", action="store_true", help="keep the units of the existing results.json that "
                   "--runs lacks (an earlier session's); a unit run again replaces its own")
    args = p.parse_args()
    folder = args.docs / "benchmarks"
    earlier = json.loads((folder / "results.json").read_text()) if args.merge else {}
    results = dict(sorted({**earlier, **collect(args.runs)}.items()))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    images = plots(results, group(results), folder)
    page = args.docs / "BENCHMARKS.md"
    text = page.read_text() if page.is_file() else f"# Benchmarks\n\n{START}\n{END}\n"
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    page.write_text(f"{before}{START}\n{render(results, images)}\n{END}{after}")
    print(f"wrote {page}, {folder / 'results.json'} and {len(images)} plots from {len(results)} results")


if __name__ == "__main__":
    main()
