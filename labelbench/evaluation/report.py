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

from labelbench.evaluation.benchmark import ENSEMBLE_PREFIX, variant_label
from labelbench.evaluation.ensembles import ensemble_scores
from labelbench.data.io import atomic_path, load_dataset, write_text
from labelbench.evaluation.metrics import Ranking, metric_names
from labelbench.evaluation.scores import ALL_VARIANTS, label_quality_scores

def metric_title(name: str) -> str:
    """Column title of a registry metric.

    >>> [metric_title(m) for m in ("auroc", "lift_at_100", "lift_at_num_errors")]
    ['AUROC', 'lift@100', 'lift@#errors']
    """
    titles = {"auroc": "AUROC", "auprc": "AUPRC"}
    return titles.get(name, name.replace("lift_at_", "lift@").replace("num_errors", "#errors"))


def _markdown_table(frame: pd.DataFrame) -> str:
    """A numeric frame (index = row labels) as markdown, the best value of each column in bold."""
    best = frame.max(axis=0)
    cells = frame.apply(lambda column: [
        f"**{v:.4f}**" if np.isfinite(v) and v >= best[column.name] - 1e-12 else f"{v:.4f}" for v in column
    ])
    return cells.to_markdown(disable_numparse=True)


def _short_model(model: str) -> str:
    return model.replace("swin_base_patch4_window7_224", "swin_base").replace(ENSEMBLE_PREFIX, "")


def variant_tables(benchmark: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """Rows: method variants; columns: single models. Values: ``metric``."""
    rows = benchmark[(benchmark["dataset"] == dataset) & ~benchmark["model"].str.startswith(ENSEMBLE_PREFIX)]
    rows = rows.assign(variant=[variant_label(m, a) for m, a in zip(rows["method"], rows["adjust_pred_probs"])])
    table = rows.pivot(index="variant", columns="model", values=metric)
    models = list(dict.fromkeys(rows["model"]))
    order = [variant_label(m, a) for m, a in ALL_VARIANTS if variant_label(m, a) in table.index]
    table = table.loc[order, models]
    table.columns = [_short_model(m) for m in table.columns]
    table.index.name = "method"
    return table


def ensemble_table(benchmark: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    rows = benchmark[(benchmark["dataset"] == dataset) & benchmark["model"].str.startswith(ENSEMBLE_PREFIX)]
    rows = rows.assign(variant=[variant_label(m, a) for m, a in zip(rows["method"], rows["adjust_pred_probs"])])
    table = rows.pivot(index="model", columns="variant", values=metric)
    table = table.loc[list(dict.fromkeys(rows["model"])), list(dict.fromkeys(rows["variant"]))]
    table.index = [_short_model(m) for m in table.index]
    table.index.name = "ensemble scheme"
    return table


def filter_table(filters: pd.DataFrame, dataset: str, metric: str = "f1") -> pd.DataFrame:
    rows = filters[filters["dataset"] == dataset]
    table = rows.pivot(index="filter_by", columns="model", values=metric)
    table = table.loc[list(dict.fromkeys(rows["filter_by"])), list(dict.fromkeys(rows["model"]))]
    table.columns = [_short_model(m) for m in table.columns]
    table.index.name = "filter_by"
    return table


def method_scores(datasets: dict[str, tuple[str, list[str]]], *, method: str, ensemble: str) -> dict:
    """Load each dataset once and score it: name -> (Dataset, {model or ensemble column: scores (N,)}).

    The ensemble column (present with two or more models) comes last; it ranks the examples.
    """
    out = {}
    for name, (root, models) in datasets.items():
        data = load_dataset(root, name, models=models)
        curves = {m: label_quality_scores(labels=data.given_labels, pred_probs=data.pred_probs[m], method=method)
                  for m in models}
        if len(models) > 1:
            curves[ENSEMBLE_PREFIX + ensemble] = ensemble_scores(
                ensemble, labels=data.given_labels, pred_probs_list=[data.pred_probs[m] for m in models],
                method=method, member_scores=list(curves.values()))
        out[name] = (data, curves)
    return out


def top_ranked(scored: dict, *, top_n: int) -> pd.DataFrame:
    """The ``top_n`` examples per dataset ranked most likely mislabeled (by the last score column
    of :func:`method_scores`: the ensemble, or the only model)."""
    frames = []
    for name, (data, curves) in scored.items():
        scores = list(curves.values())[-1]
        top = np.argsort(1 - scores)[::-1][:top_n]
        frames.append(pd.DataFrame({
            "dataset": name,
            "rank": np.arange(1, len(top) + 1),
            "image_id": [data.image_ids[i] for i in top],
            "given_label": data.given_labels[top],
            "true_label": data.true_labels[top] if data.true_labels is not None else "",
            "is_label_error": data.label_errors[top],
            "score": scores[top],
        }))
    return pd.concat(frames, ignore_index=True)


def write_markdown(path: Path, *, benchmark: pd.DataFrame, filters: pd.DataFrame, summary: dict,
                   top: pd.DataFrame, figures: list[str], lift_k: int) -> None:
    parts = [
        "# Label error detection benchmark",
        "",
        "Generated by `dvc repro` (stage `report`) from `metrics/benchmark.csv`, `metrics/filters.csv`",
        "and `metrics/summary.json`. Scores: low = likely mislabeled; metrics rank by error-ness "
        "`1 - score`. Best value per column in **bold**.",
        "",
        "## Summary over all dataset × model pairs",
        "",
        f"Mean of each metric min-max normalised across the method variants within each of the "
        f"{summary['num_pairs']} (dataset, model) pairs (1 = best variant on every pair).",
        "",
    ]
    summary_frame = pd.DataFrame(summary["methods"]).T.rename(columns=metric_title)
    summary_frame.index.name = "method"
    parts += [_markdown_table(summary_frame), ""]
    for figure in figures:
        parts += [f"![{Path(figure).stem}](../{figure})", ""]
    for dataset in dict.fromkeys(benchmark["dataset"]):
        sub = benchmark[benchmark["dataset"] == dataset]
        parts += [f"## {dataset}", ""]
        for metric in metric_names(lift_k):
            parts += [f"### {metric_title(metric)}", "", _markdown_table(variant_tables(benchmark, dataset, metric)), ""]
        if sub["model"].str.startswith(ENSEMBLE_PREFIX).any():
            parts += ["### Ensembles (AUROC)", "", _markdown_table(ensemble_table(benchmark, dataset, "auroc")), ""]
        if (filters["dataset"] == dataset).any():
            parts += ["### cleanlab `find_label_issues` filters (F1)", "", _markdown_table(filter_table(filters, dataset)), ""]
        rows = top[top["dataset"] == dataset]
        if not rows.empty:
            parts += [f"### {len(rows)} examples ranked most likely mislabeled", "",
                      "| rank | image_id | given | true | real error | score |", "|---|---|---|---|---|---|"]
            for r in rows.itertuples():
                parts.append(f"| {r.rank} | `{r.image_id}` | {r.given_label} | {r.true_label} | "
                             f"{'yes' if r.is_label_error else 'no'} | {r.score:.4f} |")
            parts.append("")
    write_text(path, "\n".join(parts))


def dot_plot(benchmark: pd.DataFrame, path: Path, metric: str = "auroc") -> None:
    """The paper's figure: one row per dataset × model, one dot per method variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = benchmark[~benchmark["model"].str.startswith(ENSEMBLE_PREFIX)]
    pairs = list(dict.fromkeys(zip(single["dataset"], single["model"])))
    variants = [(m, a) for m, a in ALL_VARIANTS if ((single["method"] == m) & (single["adjust_pred_probs"] == a)).any()]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(pairs) + 2.2))
    markers = "oosDD^v"
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (method, adjust) in enumerate(variants):
        rows = single[(single["method"] == method) & (single["adjust_pred_probs"] == adjust)]
        lookup = {(d, m): v for d, m, v in zip(rows["dataset"], rows["model"], rows[metric])}
        xs = [lookup.get(p, np.nan) for p in pairs]
        color = colors[i % len(colors)]
        # adjust_pred_probs variants: hollow markers
        ax.scatter(xs, np.arange(len(pairs)), label=variant_label(method, adjust), marker=markers[i % len(markers)],
                   facecolors="none" if adjust else color, edgecolors=color, linewidths=1.3, s=40, zorder=3)
    ax.set_yticks(np.arange(len(pairs)), [f"{d} / {_short_model(m)}" for d, m in pairs], fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(metric_title(metric))
    ax.set_title(f"{metric_title(metric)} of label quality scores per dataset × model")
    fig.legend(fontsize=8, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)


def pr_curves(scored: dict, path: Path, *, method: str) -> None:
    """Precision-recall curves per model and the ensemble (from :func:`method_scores`), one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(scored))
    rows_count = -(-len(scored) // columns)
    fig, axes = plt.subplots(rows_count, columns, figsize=(4.6 * columns, 4 * rows_count + 0.6), squeeze=False)
    for ax in axes.flat[len(scored):]:
        ax.set_visible(False)
    labels_seen = {}
    for ax, (name, (data, curves)) in zip(axes.flat, scored.items()):
        for label, scores in curves.items():
            precision, recall = Ranking.from_scores(is_error=data.label_errors, scores=scores).pr_curve()
            (line,) = ax.plot(recall, precision, lw=2.2 if label.startswith(ENSEMBLE_PREFIX) else 1)
            labels_seen.setdefault(_short_model(label), line)
        ax.axhline(data.label_errors.mean(), color="grey", ls=":", lw=1)
        ax.set_title(f"{name} ({data.num_errors} errors of {data.label_errors.shape[0]})", fontsize=10)
        ax.set_xlabel("recall")
        ax.set_ylabel(f"precision ({method})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    fig.legend(list(labels_seen.values()), list(labels_seen), fontsize=8, loc="lower center",
               ncol=min(4, len(labels_seen)), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def headline(metrics_dir: Path, datasets: list[str], *, lift_k: int, title: str):
    """A ``rich.table.Table`` of ``<metrics_dir>/models/<dataset>.json``: one row per dataset × model."""
    from rich.table import Table

    metrics = metric_names(lift_k) + ["cv_accuracy"]
    table = Table(title=title, title_justify="left")
    for column in ["dataset", "model"] + [metric_title(m) for m in metrics]:
        table.add_column(column, justify="left" if column in ("dataset", "model") else "right")
    for name in datasets:
        models = json.loads((metrics_dir / "models" / f"{name}.json").read_text())["models"]
        best = max(v["auroc"] for v in models.values())
        for i, (model, values) in enumerate(models.items()):
            cells = [f"{values[m]:.4f}" for m in metrics]
            if values["auroc"] == best:
                cells[0] = f"[bold]{cells[0]}[/bold]"
            table.add_row(name if i == 0 else "", _short_model(model) if not model.startswith(ENSEMBLE_PREFIX) else model,
                          *cells, end_section=i == len(models) - 1)
    return table
