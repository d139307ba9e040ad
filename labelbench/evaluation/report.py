"""The `report` stage and the terminal headline table.

``reports/benchmark.md``: per dataset, method variants × models for AUROC, AUPRC and lift@#errors
(best per column in bold), the ensembles, cleanlab's filters, the paper's normalised summary, and
the examples ranked most likely mislabeled. PNG figures under ``plots/``: the paper's dot plot of
AUROC per dataset × model per method, and precision-recall curves per dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from labelbench.evaluation.benchmark import (BENCHMARK_COLUMNS, ENSEMBLE_PREFIX, in_variant_order, variant_label,
                                             variant_labels)
from labelbench.evaluation.detectors import family_of
from labelbench.evaluation.ensembles import score_models, short_model
from labelbench.data.io import DataError, load_dataset, read_text, write_text
from labelbench.evaluation.issues import pyplot, save_png, top_ranked  # noqa: F401 - the report's ranked lists
from labelbench.evaluation.metrics import Ranking, metric_names
from labelbench.evaluation.scores import ALL_VARIANTS

def metric_title(name: str) -> str:
    """Column title of a registry metric.

    >>> [metric_title(m) for m in ("auroc", "lift_at_100", "lift_at_num_errors")]
    ['AUROC', 'lift@100', 'lift@#errors']
    """
    titles = {"auroc": "AUROC", "auprc": "AUPRC"}
    return titles.get(name, name.replace("lift_at_", "lift@").replace("num_errors", "#errors"))


def decimals(values, *, least: int = 4, most: int = 8) -> int:
    """Fewest decimals (``least`` to ``most``) at which the distinct finite ``values`` print distinct,
    so that near-ties show.

    >>> decimals([0.99961, 0.99964, 0.5])
    5
    """
    values = np.unique(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    for digits in range(least, most):
        if np.unique(np.round(values, digits)).shape[0] == values.shape[0]:
            return digits
    return most


def _markdown_table(frame: pd.DataFrame) -> str:
    """A numeric frame (index = row labels) as markdown, the best value of each column in bold."""
    digits = decimals(frame.to_numpy().ravel())
    cells = frame.map(lambda v: f"{v:.{digits}f}")
    cells = cells.mask(np.isfinite(frame) & (frame >= frame.max(axis=0) - 1e-12), "**" + cells + "**")
    return cells.to_markdown(disable_numparse=True)


#: How a cell shows the verdict of its paired comparison with the best of its group.
MARKS = {"best": "**{}**", "tied": "{} †", "worse": "{}"}
LEGEND = ("**bold**: best of its group alone (a single model's 7 variants, or an ensemble scheme's 5); "
          "†: tied with the best (the same value, or the {level:.0%} paired-bootstrap interval of the difference "
          "to the best contains 0); [lo, hi]: {level:.0%} bootstrap percentile interval of the value over "
          "{resamples} resamples of the examples (`benchmark.bootstrap`).")


def marked_cell(row: pd.Series, *, metric: str, digits: int, verdict: str = "_vs_best_in_family") -> str:
    """``value [lo, hi]`` of ``metric`` in ``row``, marked by its ``<metric><verdict>`` column (:data:`MARKS`;
    by default the verdict among the row's own family, e.g. a model's 7 pred_probs variants); the plain value
    when the row has no such column."""
    text = f"{row[metric]:.{digits}f}"
    if f"{metric}{verdict}" not in row:
        return text
    lo, hi = row[f"{metric}_lo"], row[f"{metric}_hi"]
    return MARKS.get(row[f"{metric}{verdict}"], "{}").format(text) + f" [{lo:.{digits}f}, {hi:.{digits}f}]"


def _pivot(rows: pd.DataFrame, *, index: str, columns: str, values: str) -> pd.DataFrame:
    """``rows`` pivoted, its rows and columns in their order of first appearance (not sorted)."""
    table = rows.pivot(index=index, columns=columns, values=values)
    return table.loc[list(dict.fromkeys(rows[index])), list(dict.fromkeys(rows[columns]))]


def variant_tables(benchmark: pd.DataFrame, dataset: str, metric: str, *, ensembles: bool = False) -> pd.DataFrame:
    """Rows: method variants; columns: single models (``ensembles``: rows: ensemble schemes; columns: the cleanlab
    variants). Cells: ``metric`` (marked, with its interval, when the benchmark has the bootstrap's columns:
    :func:`marked_cell`), at one number of decimals for the whole table (:func:`decimals`)."""
    in_group = benchmark["model"].str.startswith(ENSEMBLE_PREFIX) == ensembles
    rows = benchmark[(benchmark["dataset"] == dataset) & in_group]
    rows = rows.assign(variant=variant_labels(rows), short_model=[short_model(m) for m in rows["model"]])
    rows = rows.set_index("variant").loc[in_variant_order(set(rows["variant"]))].reset_index()
    digits = decimals(rows[metric])
    rows = rows.assign(_cell=[marked_cell(r, metric=metric, digits=digits) for _, r in rows.iterrows()])
    index, columns = ("short_model", "variant") if ensembles else ("variant", "short_model")
    table = _pivot(rows, index=index, columns=columns, values="_cell")
    return table.rename_axis(index="ensemble scheme" if ensembles else "method", columns=None)


def method_scores(datasets: dict[str, tuple[str, list[str]]], *, method: str, ensemble: str) -> dict:
    """Load each dataset once and score it (:func:`~labelbench.evaluation.ensembles.score_models`): name ->
    (Dataset, {model or ensemble column: scores (N,)}).

    The ensemble column (present with two or more models) comes last; it ranks the examples.
    """
    loaded = {name: load_dataset(root, name, models=models) for name, (root, models) in datasets.items()}
    return {name: (data, score_models(data.pred_probs, labels=data.given_labels, method=method,
                                      ensemble=ensemble).columns) for name, data in loaded.items()}


def write_markdown(path: Path, *, benchmark: pd.DataFrame, filters: pd.DataFrame, summary: dict,
                   top: pd.DataFrame, figures: list[str], lift_k: int, sections: list[str] = ()) -> None:
    """``sections``: markdown of other stages (the multi-annotator track), appended as they are."""
    bootstrap = summary.get("bootstrap")
    parts = [
        "# Label error detection benchmark",
        "",
        "Generated by `dvc repro` (stage `report`) from `metrics/benchmark.csv`, `metrics/filters.csv`",
        "and `metrics/summary.json`. Scores: low = likely mislabeled; metrics rank by error-ness "
        "`1 - score`. " + (LEGEND.format(**bootstrap) if bootstrap else "Best value per column in **bold**."),
        "",
        "## Summary over all dataset × model pairs",
        "",
        f"Mean of each metric min-max normalised across the method variants within each of the "
        f"{summary['num_pairs']} (dataset, model) pairs (1 = best variant on every pair).",
        "",
    ]
    summary_frame = pd.DataFrame(summary["methods"]).T.rename(columns=metric_title).rename_axis("method")
    parts += [_markdown_table(summary_frame), ""]
    if "verdicts" in summary:  # rows: variants; columns: metrics; cells: wins / ties / losses over the pairs
        verdicts = {v: {metric_title(m): f"{c['wins']} / {c['ties']} / {c['losses']}" for m, c in n.items()}
                    for v, n in summary["verdicts"].items()}
        parts += ["Wins / ties / losses of each variant over the pairs: best alone, tied with the best (the same "
                  "value, or a paired-bootstrap interval of the difference containing 0), or worse.", "",
                  pd.DataFrame(verdicts).T.rename_axis("method").to_markdown(), ""]
    for figure in figures:
        parts += [f"![{Path(figure).stem}](../{figure})", ""]
    if bootstrap and figures:
        parts += [f"`{Path(figures[0]).name}`: each variant's AUROC minus the best variant's on the same dataset × "
                  "model, with the paired-bootstrap interval of that difference (a bar reaching 0: tied).", ""]
    for dataset in dict.fromkeys(benchmark["dataset"]):
        parts += [f"## {dataset}", ""]
        ensembles = int(benchmark.loc[benchmark["dataset"] == dataset, "model"].str.startswith(ENSEMBLE_PREFIX).any())
        for group, heading in [(False, "")] + [(True, "Ensembles: ")] * ensembles:
            for metric in metric_names(lift_k):
                parts += [f"### {heading}{metric_title(metric)}", "",
                          variant_tables(benchmark, dataset, metric, ensembles=group).to_markdown(), ""]
        rows = filters[filters["dataset"] == dataset]
        if not rows.empty:
            for metric, title in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
                table = _pivot(rows, index="filter_by", columns="model", values=metric).rename(columns=short_model)
                parts += [f"### cleanlab `find_label_issues` filters: {title}", "", _markdown_table(table), ""]
        parts += _ranked_list(top, dataset)
    for dataset in dict.fromkeys(top["dataset"]):
        if dataset not in set(benchmark["dataset"]):
            parts += [f"## {dataset}", "", "Not benchmarked: no known label errors (added without `--errors`), so "
                      "no metric; the ranked list only.", ""] + _ranked_list(top, dataset)
    parts += [section.rstrip("\n") + "\n" for section in sections]
    write_text(path, "\n".join(parts))


def _ranked_list(top: pd.DataFrame, dataset: str) -> list[str]:
    """Markdown lines: the dataset's rows of :func:`top_ranked` (reports/issues/<dataset>.csv)."""
    rows = top[top["dataset"] == dataset]
    if rows.empty:
        return []
    known = [c for c in ("true_label", "is_label_error") if c in rows and rows[c].ne("").all()]
    table = pd.DataFrame({"rank": rows["rank"].astype(str), "image_id": "`" + rows["image_id"] + "`",
                          "given": rows["given_label"], "suggested": rows["suggested_label"]})
    if "true_label" in known:
        table["true"] = rows["true_label"]
    if "is_label_error" in known:
        table["real error"] = np.where(rows["is_label_error"] == "1", "yes", "no")
    table["score"] = [f"{score:.6g}" for score in rows["score"]]
    return [f"### {len(rows)} examples ranked most likely mislabeled (`reports/issues/{dataset}.csv`)", "",
            table.to_markdown(index=False, tablefmt="github", disable_numparse=True), ""]


def dot_plot(benchmark: pd.DataFrame, path: Path, metric: str = "auroc") -> None:
    """The paper's figure, made comparable: one row per dataset × model, one dot per method variant
    at its difference to the pair's best variant, with the paired-bootstrap interval of that
    difference as error bars (``<metric>_diff_lo/_hi``); a symmetric-log axis so that gaps of 1e-4
    (CIFAR) and 0.1 (roman-numeral) both show. Without the bootstrap's columns: the metric itself."""
    plt = pyplot()
    single = benchmark[~benchmark["model"].str.startswith(ENSEMBLE_PREFIX)]
    paired = f"{metric}_diff_lo" in single.columns
    best = single.groupby(["dataset", "model"], sort=False)[metric].transform("max") if paired else 0
    single = single.assign(shown=single[metric] - best)
    pairs = list(dict.fromkeys(zip(single["dataset"], single["model"])))
    variants = [(m, a) for m, a in ALL_VARIANTS if ((single["method"] == m) & (single["adjust_pred_probs"] == a)).any()]
    # the other detector families, where a dataset trained here has them: after the pred_probs scores
    variants += [(m, False) for m in dict.fromkeys(single["method"]) if family_of(m) != "pred_probs"]
    legend_rows = -(-len(variants) // 4)
    height = 0.36 * len(pairs) + 1.9 + 0.2 * legend_rows
    fig, ax = plt.subplots(figsize=(10, height))
    markers = "oosDD^v" + "PX*hp<>d"  # pred_probs' 7 variants, then the other families' detectors
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"] + list(plt.get_cmap("Dark2").colors)
    offsets = np.linspace(-0.3, 0.3, len(variants)) if len(variants) > 1 else np.zeros(1)
    for i, (method, adjust) in enumerate(variants):
        rows = single[(single["method"] == method) & (single["adjust_pred_probs"] == adjust)]
        rows = rows.set_index(["dataset", "model"])
        found = [j for j, p in enumerate(pairs) if p in rows.index]
        rows = rows.loc[[pairs[j] for j in found]]
        ys = np.array(found) + offsets[i]
        color = colors[i % len(colors)]
        if paired:  # the interval of the difference (it need not contain the point difference)
            ax.hlines(ys, rows[f"{metric}_diff_lo"].to_numpy(), rows[f"{metric}_diff_hi"].to_numpy(), color=color, lw=1,
                      alpha=0.8, zorder=2)
        # adjust_pred_probs variants: hollow markers
        family = family_of(method)
        label = variant_label(method, adjust) + ("" if family == "pred_probs" else f" ({family.replace('_', ' ')})")
        ax.scatter(rows["shown"].to_numpy(), ys, label=label, marker=markers[i % len(markers)],
                   facecolors="none" if adjust else color, edgecolors=color, linewidths=1.3, s=30, zorder=3)
    if paired:  # room beyond the outermost dot or bar, which autoscaling on the symlog axis leaves half cut off
        extent = single[["shown", f"{metric}_diff_lo", f"{metric}_diff_hi"]].to_numpy(dtype=float)
        extent = extent[np.isfinite(extent)]
        if extent.size:
            ax.set_xlim(min(extent.min(), 0) * 2.5 - 1e-4, max(extent.max(), 0) * 2.5 + 1e-4)
    ax.set_yticks(np.arange(len(pairs)), [f"{d} / {short_model(m)}" for d, m in pairs], fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    title = metric_title(metric)
    if paired:
        ax.set_xscale("symlog", linthresh=1e-4)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"{title} − best {title} of the dataset × model (symlog; bars: paired-bootstrap interval)")
        ax.set_title(f"{title} of each label quality score relative to the best per dataset × model")
    else:
        ax.set(xlabel=title, title=f"{title} of label quality scores per dataset × model")
    fig.legend(fontsize=8, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, (0.25 + 0.2 * legend_rows) / height, 1, 1))
    save_png(fig, path, dpi=110)


def pr_curves(scored: dict, path: Path, *, method: str) -> None:
    """Precision-recall curves per model and the ensemble (from :func:`method_scores`), one panel per dataset."""
    plt = pyplot()
    columns = min(3, len(scored))
    rows_count = -(-len(scored) // columns)
    fig, axes = plt.subplots(rows_count, columns, figsize=(4.6 * columns, 4 * rows_count + 0.6), squeeze=False)
    for ax in axes.flat[len(scored):]:
        ax.set_visible(False)
    labels_seen = {}
    # one colour per model (and ensemble) across every panel, not per panel
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"] + list(plt.get_cmap("tab20b").colors)
    names = list(dict.fromkeys(label for _, curves in scored.values() for label in curves))
    colour = {label: palette[i % len(palette)] for i, label in enumerate(names)}
    for ax, (name, (data, curves)) in zip(axes.flat, scored.items()):
        for label, scores in curves.items():
            precision, recall = Ranking.from_scores(is_error=data.label_errors, scores=scores).pr_curve()
            (line,) = ax.plot(recall, precision, color=colour[label], lw=2.2 if label.startswith(ENSEMBLE_PREFIX) else 1)
            labels_seen.setdefault(short_model(label), line)
        base = ax.axhline(data.label_errors.mean(), color="grey", ls=":", lw=1)
        ax.set_title(f"{name} ({data.num_errors} errors of {data.label_errors.shape[0]})", fontsize=10)
        ax.set(xlabel="recall", ylabel=f"precision ({method})", xlim=(0, 1), ylim=(0, 1.02))
    labels_seen["base rate: share of errors (a random ranking)"] = base
    fig.legend(list(labels_seen.values()), list(labels_seen), fontsize=8, loc="lower center",
               ncol=min(4, len(labels_seen)), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save_png(fig, path, dpi=110)


def headline(metrics_dir: Path, datasets: list[str], *, lift_k: int, title: str, method: str,
             adjust_pred_probs: bool):
    """A ``rich.table.Table`` of ``<metrics_dir>/models/<dataset>.json``: one row per dataset × model.

    The AUROC interval of each row is looked up in ``<metrics_dir>/benchmark.csv`` (the benchmark
    stage bootstraps every variant, ``method`` and ``adjust_pred_probs`` select the row): blank where
    that table has no such row (e.g. entropy's ensemble) or its AUROC is not this one (stale)."""
    from rich.table import Table

    others = metric_names(lift_k)[1:] + ["cv_accuracy"]  # after the AUROC and its interval
    intervals = {}
    benchmark_csv = metrics_dir / "benchmark.csv"
    if benchmark_csv.is_file():
        rows = read_table(benchmark_csv, BENCHMARK_COLUMNS + ["auroc"], numbers=["auroc", "auroc_lo", "auroc_hi"])
        if {"auroc_lo", "auroc_hi"} <= set(rows.columns):
            rows = rows[(rows["method"] == method) & (rows["adjust_pred_probs"] == adjust_pred_probs)]
            intervals = {(d, m): (a, lo, hi) for d, m, a, lo, hi in
                         zip(rows["dataset"], rows["model"], rows["auroc"], rows["auroc_lo"], rows["auroc_hi"])}
    table = Table(title=title, title_justify="left")
    for column in ["dataset", "model", "AUROC", "AUROC interval"] + [metric_title(m) for m in others]:
        table.add_column(column, justify="left" if column in ("dataset", "model") else "right")
    per_dataset = {name: model_metrics(metrics_dir / "models" / f"{name}.json", ["auroc", *others])
                   for name in datasets}
    # one number of decimals for the whole column, enough to tell apart the values within each dataset
    digits = max([decimals([v["auroc"] for v in models.values()]) for models in per_dataset.values()], default=4)
    for name, models in per_dataset.items():
        best = max(v["auroc"] for v in models.values())
        for i, (model, values) in enumerate(models.items()):
            auroc = f"{values['auroc']:.{digits}f}"
            known, lo, hi = intervals.get((name, model), (None, None, None))
            fresh = known is not None and abs(known - values["auroc"]) < 1e-12
            table.add_row(name if i == 0 else "", short_model(model) if not model.startswith(ENSEMBLE_PREFIX) else model,
                          f"[bold]{auroc}[/bold]" if values["auroc"] == best else auroc,
                          f"{lo:.{digits}f}–{hi:.{digits}f}" if fresh else "", *(f"{values[m]:.4f}" for m in others),
                          end_section=i == len(models) - 1)
    return table


def read_table(path: Path, columns: list[str], *, numbers: list[str] = ()) -> pd.DataFrame:
    """A table written by the benchmark stage, with its ``columns`` checked and those of ``numbers`` that it has
    holding numbers; DataError naming it otherwise."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable CSV ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing or frame.empty:
        raise DataError(path, f"missing columns {missing} (rerun the benchmark stage)" if missing else "has no rows")
    if text := [c for c in numbers if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c])]:
        raise DataError(path, f"column(s) {text} hold other values than numbers (rerun the benchmark stage)")
    return frame


def model_metrics(path: Path, metrics: list[str]) -> dict[str, dict[str, float]]:
    """model -> {metric: value} of ``metrics`` from an evaluate stage's ``metrics/models/<dataset>.json``; DataError
    naming it when it is missing or lacks one of them (not written yet, or for other params: `dvc repro`)."""
    if not path.is_file():
        raise DataError(path, "not found; `dvc repro` writes it (stage evaluate)")
    try:
        models = json.loads(read_text(path))["models"]
        for model, values in models.items():
            for metric in metrics:
                if not isinstance(values[metric], (int, float)):
                    raise TypeError(f"{model}: {metric} is {values[metric]!r}")
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not the evaluate stage's metrics for these params ({type(exc).__name__}: {exc}); "
                              "`dvc repro` rewrites it") from None
    if not models:
        raise DataError(path, "holds no model; `dvc repro` rewrites it")
    return models


def family_section(benchmark: pd.DataFrame, *, trained: list[str], metric: str = "auroc", level: float = 0.95) -> str:
    """"Which family?": per dataset trained here, the best detector of each family per model, with its interval and
    verdict against the best of that dataset × model (all families judged together), and a sentence saying which
    family won and by how much, or that they tie. Published datasets have only pred_probs: said so. ``level``:
    the bootstrap's (``benchmark.bootstrap.level``), as the table's intervals were computed."""
    title = metric_title(metric)
    lines = ["## Which family?", "",
             "Per dataset trained here, the best detector of each family for each model (single models: ensembles "
             f"cover pred_probs only): {title} [{level:.0%} bootstrap percentile interval], verdict against the best "
             f"detector of that dataset × model over every family (**bold** best alone, † tied: the {level:.0%} "
             "paired-bootstrap interval of the difference to the best contains 0). Training dynamics read each "
             "fold's training logits per epoch (in-sample, averaged over the folds that trained on an example), "
             "representation neighbours each held-out example's features against its fold's training rows. The "
             "published datasets have only the authors' pred_probs (no training records), so only that family is "
             "benchmarked on them. Each family's best is picked after the fact on these same examples, with no "
             "correction for that choice among its detectors: a narrow lead is a hint, not a proof.", ""]
    rows = benchmark[~benchmark["model"].str.startswith(ENSEMBLE_PREFIX) & benchmark["dataset"].isin(trained)]
    if rows.empty:
        return "\n".join(lines + ["No dataset is trained here (`crossval.datasets` is empty).", ""])
    rows = rows.assign(family=[family_of(m) for m in rows["method"]], variant=variant_labels(rows))
    judged = f"{metric}_vs_best" in rows.columns
    for dataset in trained:
        for model, group in rows[rows["dataset"] == dataset].groupby("model", sort=False):
            best = group.loc[group.groupby("family", sort=False)[metric].idxmax()].sort_values(metric, ascending=False)
            digits = decimals(best[metric])
            table = pd.DataFrame({"family": best["family"], "best detector": best["variant"],
                                  title: [marked_cell(r, metric=metric, digits=digits, verdict="_vs_best")
                                          for _, r in best.iterrows()]})
            lines += [f"### {dataset} / {short_model(model)}", "", table.to_markdown(index=False), ""]
            first, second = best.iloc[0], best.iloc[1] if len(best) > 1 else None
            if second is None:
                verdict = f"Only {first['family']} was measured."
            elif judged and second[f"{metric}_vs_best"] != "worse":
                verdict = (f"The families tie: {first['family']} ({first['variant']}) leads "
                           f"{second['family']} ({second['variant']}) by {first[metric] - second[metric]:.{digits}f} "
                           f"{title}, within the paired-bootstrap interval.")
            else:
                verdict = (f"{first['family'].replace('_', ' ').capitalize()} wins: {first['variant']} leads the best "
                           f"of the next family, {second['family']} ({second['variant']}), by "
                           f"{first[metric] - second[metric]:.{digits}f} {title}"
                           + (" (its paired-bootstrap interval excludes 0)." if judged else "."))
            lines += [verdict, ""]
    return "\n".join(lines)
