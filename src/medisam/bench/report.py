"""Benchmark report: summary tables (Markdown + HTML) and plots from OUTDIR/results.csv.

Files written into OUTDIR (overwritten on each call; they are derived from results.csv):

* ``report.md`` / ``report.html``: model x modality x strategy (mean, std, n of DSC and
  NSD, median HD95), per dataset/target, Dice versus clicks, jitter sensitivity.
* ``summary.csv``: the model x modality x strategy table as numbers.
* For the ``cvpr25*`` protocols, a table of the mean DSC at each step, NSD, DSC/NSD AUC
  and seconds per class (:func:`medisam.bench.cvpr25.protocol_table`), and the same per
  class (label) over the cases that hold it (:func:`medisam.bench.cvpr25.class_table`); their
  steps are the ``click`` column, so the Dice-versus-clicks plot shows them.
* ``dice_by_modality.png``, ``dice_vs_clicks.png``, ``dice_vs_clicks_per_class.png`` (``cvpr25*``:
  one line per class), ``jitter_sensitivity.png`` (when the strategies needed are present).

For interactive strategies (``clicksN``) the summary tables use the last click; the
click curve uses every click. NaN HD95 (one mask empty, see :mod:`medisam.bench.metrics`)
is skipped by the median and counted in ``hd95_nan``.
"""

from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path
from typing import Any

from medisam.errors import InputError, require
from medisam.io import atomic_write

log = logging.getLogger(__name__)


def load_results(outdir: Path):
    pd = require("pandas", "bench")
    path = Path(outdir) / "results.csv"
    if not path.exists():
        raise InputError(f"{path}: no results to report")
    df = pd.read_csv(path, keep_default_na=True, dtype={"case": str, "target_id": str, "target": str})
    if df.empty:
        raise InputError(f"{path}: no result rows")
    for col in ("dsc", "iou", "nsd", "hd95", "score", "time_s", "click"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def final_rows(df):
    """One row per (case, target, model, strategy): the last click of interactive strategies."""
    clicks = df[df["click"].notna()]
    rest = df[df["click"].isna()]
    if clicks.empty:
        return rest
    keys = ["dataset", "case", "target_id", "model", "strategy", "seed"]
    last = clicks.loc[clicks.groupby(keys)["click"].idxmax()]
    pd = require("pandas", "bench")
    return pd.concat([rest, last], ignore_index=True)


def summarise(df, by: list[str]):
    """Mean/std/n of DSC and NSD, median HD95 and its NaN count, mean time, grouped by ``by``."""
    g = df.groupby(by, dropna=False)
    out = g.agg(dsc_mean=("dsc", "mean"), dsc_std=("dsc", "std"), nsd_mean=("nsd", "mean"),
                nsd_std=("nsd", "std"), hd95_median=("hd95", "median"),
                hd95_nan=("hd95", lambda s: int(s.isna().sum())), time_s=("time_s", "mean"),
                n=("dsc", "size")).reset_index()
    return out


def short_labels(models) -> dict[str, str]:
    """Report names of model labels: ``name@/a/b/w.pth`` -> ``name@w.pth`` where that stays unique
    (a full path made every table and plot title of a run with checkpoints unreadable)."""
    from pathlib import PurePath

    models = list(dict.fromkeys(models))
    short = {m: m.partition("@")[0] + ("@" + PurePath(m.partition("@")[2]).name if "@" in m else "") for m in models}
    return short if len(set(short.values())) == len(short) else {m: m for m in models}


def side_by_side(fin, order: list[str] | None = None):
    """Per (dataset, strategy), the models on the same targets: each one's mean DSC over the targets
    every model scored (paired), and each later model's mean difference to the first one (of ``order``,
    the run's ``--model`` list, where given), the reference, with its 95 % interval (Student's t: a few
    targets give a wide one); None with one model."""
    from scipy import stats

    present = list(dict.fromkeys(fin["model"]))
    models = [m for m in dict.fromkeys(order or []) if m in present] + [m for m in present if m not in (order or [])]
    if len(models) < 2:
        return None
    pd = require("pandas", "bench")
    wide = (fin.set_index(["dataset", "strategy", "case", "target_id", "seed", "model"])["dsc"]
            .unstack("model")[models].dropna())
    rows = []
    for (dataset, strategy), g in wide.groupby(level=["dataset", "strategy"], sort=True):
        row = {"dataset": dataset, "strategy": strategy, "paired targets": len(g)}
        row.update({f"{m} dsc": g[m].mean() for m in models})
        for m in models[1:]:
            d = g[m] - g[models[0]]
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / len(d) ** 0.5 if len(d) > 1 else float("nan")
            row[f"{m} - {models[0]}"] = f"{d.mean():+.3f}" + ("" if half != half else f" ± {half:.3f}")
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def _md_table(df, floats: int = 3) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                cells.append("" if v != v else f"{v:.{floats}f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _jitter_pct(name: str) -> float | None:
    if name == "box":
        return 0.0
    m = re.fullmatch(r"box-jitter(\d+(?:\.\d+)?)", name)
    return float(m[1]) if m else None


def protocol_rows(df):
    """The rows of the whole-case ``cvpr25*`` protocols (their own tables and plots read them)."""
    return df[df["strategy"].astype(str).str.startswith("cvpr25")]


def click_curve(df):
    clicks = df[df["click"].notna()]
    if clicks.empty:
        return None
    return (clicks.groupby(["model", "strategy", "click"])["dsc"].agg(["mean", "std", "size"])
            .reset_index().rename(columns={"mean": "dsc_mean", "std": "dsc_std", "size": "n"}))


def jitter_table(df):
    fin = df[df["click"].isna()].copy()
    fin["jitter_pct"] = fin["strategy"].map(_jitter_pct)
    fin = fin[fin["jitter_pct"].notna()]
    if fin["jitter_pct"].nunique() < 2:
        return None
    return (fin.groupby(["model", "jitter_pct"])["dsc"].agg(["mean", "std", "size"]).reset_index()
            .rename(columns={"mean": "dsc_mean", "std": "dsc_std", "size": "n"}))


# ------------------------------------------------------------------ plots
#: Every plot a report may hold; those a run does not draw are removed, so a folder rerun with
#: --force or another set of strategies shows no plot of an earlier run.
PLOTS = ("dice_by_modality.png", "dice_vs_clicks.png", "dice_vs_clicks_per_class.png", "jitter_sensitivity.png")


def _plots(df, fin, outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []
    models = sorted(fin["model"].unique())
    strategies = list(dict.fromkeys(fin["strategy"]))
    modalities = sorted(fin["modality"].astype(str).unique())
    fig_w = min(16.0, max(6.0, 0.25 * len(modalities) * max(1, len(strategies))))
    fig, axes = plt.subplots(len(models), 1, figsize=(fig_w, 4 * len(models)), squeeze=False)
    width = 0.8 / max(1, len(strategies))
    for ax, model in zip(axes[:, 0], models):
        sub = fin[fin["model"] == model]
        for j, strat in enumerate(strategies):
            data = [sub[(sub["modality"].astype(str) == m) & (sub["strategy"] == strat)]["dsc"].dropna().values
                    for m in modalities]
            pos = [i + (j - (len(strategies) - 1) / 2) * width for i in range(len(modalities))]
            keep = [(p, d) for p, d in zip(pos, data) if len(d)]
            if keep:
                bp = ax.boxplot([d for _, d in keep], positions=[p for p, _ in keep], widths=width * 0.9,
                                patch_artist=True, showfliers=False)
                color = plt.cm.tab10(j % 10)
                for box in bp["boxes"]:
                    box.set_facecolor(color)
                ax.plot([], [], color=color, lw=6, label=strat)
        ax.set_xticks(range(len(modalities)))
        ax.set_xticklabels(modalities)
        ax.set_ylim(0, 1)
        ax.set_ylabel("Dice")
        ax.set_title(f"Dice by modality ({model})")
        ax.legend(fontsize=7, ncol=min(4, len(strategies)), loc="lower right")
    fig.tight_layout()
    fig.savefig(outdir / "dice_by_modality.png", dpi=110)
    plt.close(fig)
    written.append("dice_by_modality.png")

    curve = click_curve(df)
    if curve is not None:
        _errorbar_plot(plt, curve, ["model", "strategy"], "click", "clicks", "Dice versus clicks",
                       outdir / "dice_vs_clicks.png")
        written.append("dice_vs_clicks.png")
    from medisam.bench.cvpr25 import class_curve

    protocol = protocol_rows(df)
    per_class = None if protocol.empty else class_curve(protocol)
    if per_class is not None:
        _errorbar_plot(plt, per_class, ["model", "label"], "click", "clicks", "Dice versus clicks per class",
                       outdir / "dice_vs_clicks_per_class.png")
        written.append("dice_vs_clicks_per_class.png")
    jit = jitter_table(df)
    if jit is not None:
        _errorbar_plot(plt, jit, ["model"], "jitter_pct", "box jitter (% of box size)",
                       "Box jitter sensitivity", outdir / "jitter_sensitivity.png")
        written.append("jitter_sensitivity.png")
    return written


def _errorbar_plot(plt, table, group: list[str], x: str, xlabel: str, title: str, path: Path) -> None:
    """Mean Dice (± standard error) against column ``x``, one line per ``group`` value."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, sub in table.groupby(group):
        label = " ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        ax.errorbar(sub[x], sub["dsc_mean"], yerr=sub["dsc_std"] / sub["n"].clip(lower=1) ** 0.5,
                    marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean Dice (± s.e.)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ report
def write_report(outdir: str | Path, config: dict[str, Any] | None = None) -> list[Path]:
    """Write the tables and plots for ``outdir/results.csv``; returns the files written."""
    outdir = Path(outdir)
    df = load_results(outdir)
    short = short_labels(df["model"].astype(str))
    df["model"] = df["model"].astype(str).map(short)
    fin = final_rows(df)
    given = ((config or {}).get("settings") or {}).get("models") or []
    paired = side_by_side(fin, [short.get(str(m), str(m)) for m in given])
    overall = summarise(fin, ["model", "modality", "strategy"])
    per_target = summarise(fin, ["dataset", "target", "model", "strategy"])
    by_strategy = summarise(fin, ["model", "strategy"])
    curve = click_curve(df)
    jit = jitter_table(df)
    images = _plots(df, fin, outdir)
    for stale in set(PLOTS) - set(images):
        (outdir / stale).unlink(missing_ok=True)
    errors = outdir / "errors.csv"
    n_err = max(0, len(errors.read_text().splitlines()) - 1) if errors.exists() else 0

    sections: list[tuple[str, Any]] = [("Model x strategy (all datasets)", by_strategy)]
    if paired is not None:
        sections.append(("Models side by side (the targets every model scored; the first model is the reference; "
                         "differences with their 95 % interval, Student's t)", paired))
    sections += [("Model x modality x strategy", overall), ("Per dataset and target", per_target)]
    if curve is not None:
        sections.append(("Dice versus clicks", curve))
    if jit is not None:
        sections.append(("Box jitter sensitivity", jit))
    protocol = protocol_rows(df)
    if not protocol.empty:  # DSC per step, AUCs and seconds per class (bench/cvpr25.py)
        from medisam.bench.cvpr25 import class_table, protocol_table

        sections.append(("CVPR25 interactive 3D (per case, all classes)", protocol_table(protocol)))
        per_class = class_table(protocol)
        if per_class is not None:
            sections.append(("CVPR25 interactive 3D per class (cases holding the class)", per_class))
    head = (f"{len(df)} result rows, {fin['case'].nunique()} cases, {fin['dataset'].nunique()} datasets, "
            f"{n_err} errors (errors.csv). Configuration: config.json. Metrics: Dice (DSC), NSD at the "
            f"configured tolerance in mm, HD95 in mm; n = targets (last click for interactive strategies).")

    md = ["# medisam benchmark report", "", head, ""]
    for title, table in sections:
        md += [f"## {title}", "", _md_table(table), ""]
    md += [f"![{name}]({name})" for name in images]
    if config is not None:
        md += ["", "## Configuration", "", "```json", json.dumps(config, indent=2, default=str), "```"]

    body = [f"<h1>medisam benchmark report</h1><p>{html.escape(head)}</p>"]
    for title, table in sections:
        body.append(f"<h2>{html.escape(title)}</h2>")
        body.append(table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    body += [f'<p><img src="{name}" alt="{name}"></p>' for name in images]
    if config is not None:
        body.append(f"<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=2, default=str))}</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>medisam benchmark</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:90%}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
            + "\n".join(body) + "</body></html>")

    written = []
    for name, text in (("report.md", "\n".join(md) + "\n"), ("report.html", page)):
        with atomic_write(outdir / name, force=True) as tmp:
            tmp.write_text(text)
        written.append(outdir / name)
    with atomic_write(outdir / "summary.csv", force=True) as tmp:
        overall.to_csv(tmp, index=False)
    written.append(outdir / "summary.csv")
    return written + [outdir / n for n in images]
