"""Score sweep as DVC experiments; DVC queues, runs and records them, this adds the comparison table.

    python -m labelbench.ops.sweep [--jobs 2] [--methods self_confidence,entropy]

1. earlier experiments of HEAD with this sweep's names are removed (a rerun replaces them), then each
   valid (score, adjust_pred_probs) pair is queued, ``dvc exp run --queue -S score=.. -S
   adjust_pred_probs=.. -n sweep-.. evaluate published`` (only the evaluate stage runs; the
   second target makes the experiment check out the authors' data). Invalid pairs are reported as skipped;
2. ``dvc exp run --run-all -j N`` starts the workers and follows every task until it is done (the
   workers exit by themselves; no ``dvc queue stop``);
3. ``dvc exp show --json``: one row per experiment, every metric x dataset of its metrics files,
   the mean per metric, sorted by the mean of ``--sort-by``; failed experiments stay as rows without
   numbers (exp show repeats the baseline's metrics for them). Printed with rich, written to reports/sweep.md.
Exit status 1 when an experiment failed; 2 for a bad argument (``--jobs``, ``--methods``, ``--sort-by``, ...),
refused before any dvc command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from labelbench.config import load_params
from labelbench.data.files import write_text
from labelbench.evaluation.metrics import metric_names
from labelbench.evaluation.params import EvaluateParams
from labelbench.evaluation.scores import SCORE_METHODS, resolve_method
from labelbench.ops.dvc_cli import dvc

IDS = ["experiment", "score", "adjust_pred_probs", "state"]


def variants(methods=None, prefix="sweep") -> tuple[dict[str, tuple[str, bool]], list[str]]:
    """({name: (score, adjust)} of the valid pairs, [why each invalid pair is skipped])."""
    wanted = [resolve_method(m) for m in methods] if methods else list(SCORE_METHODS)
    valid, skipped = {}, []
    for method in wanted:
        for adjust in (False, True):
            try:
                resolve_method(method, adjust_pred_probs=adjust)
                valid[f"{prefix}-{method.replace('_', '-')}{'-adjusted' * adjust}"] = (method, adjust)
            except ValueError as exc:
                skipped.append(f"{method} + adjust_pred_probs={str(adjust).lower()}: {exc}")
    return valid, skipped


def revs(show: list, names) -> list[dict]:
    return [r for base in show for e in base.get("experiments") or [] for r in e["revs"] if r.get("name") in names]


def table(show: list, names, sort_by: str = "auroc") -> pd.DataFrame:
    """`dvc exp show --json` -> one row per experiment of ``names``: IDS, then for each metric of its
    metrics/headline.json ({metric: {dataset: value}}) a column (metric, dataset) per dataset and (metric, "mean").
    The other metrics files are not per dataset (multiannotator.json's keys are methods)."""
    rows = []
    for rev in revs(show, names):
        params = rev["data"]["params"]["params.yaml"]["data"]
        ids = [rev["name"], params["score"], params["adjust_pred_probs"], "failed" if rev.get("error") else "ok"]
        headline = {} if rev.get("error") else rev["data"].get("metrics", {}).get("metrics/headline.json") or {}
        rows.append({(i, ""): v for i, v in zip(IDS, ids)} | {
            (m, d): v for m, per in (headline.get("data") or {}).items() if isinstance(per, dict)
            for d, v in per.items()})
    df = pd.DataFrame(rows, columns=pd.MultiIndex.from_tuples(list(dict.fromkeys(c for r in rows for c in r))
                                                              or [(i, "") for i in IDS]))
    for metric in dict.fromkeys(df.columns.get_level_values(0)[len(IDS):]):
        df.insert(max(i for i, c in enumerate(df.columns) if c[0] == metric) + 1, (metric, "mean"),
                  df.loc[:, [c for c in df.columns if c[0] == metric]].mean(axis=1))
    if (sort_by, "mean") in df:
        df = df.sort_values((sort_by, "mean"), ascending=False, na_position="last", kind="stable")
    return df.reset_index(drop=True)


def wrap(text, width: int) -> str:
    """Break after '_' and '-' into lines of at most ``width`` (longer pieces stay whole)."""
    lines = [""]
    for piece in filter(None, re.findall(r"[^_-]*[_-]?", str(text))):
        lines += [""] if lines[-1] and len(lines[-1] + piece) > width else []
        lines[-1] += piece
    return "\n".join(lines)


def rich_table(df: pd.DataFrame, width: int, sort_by: str) -> tuple[Table, list[str]]:
    """Whole metrics (every dataset + mean, ``sort_by`` first) while the table fits in ``width``;
    returns the metrics left out (they are in the markdown file). Failed rows read "failed"."""
    metrics = sorted(dict.fromkeys(c[0] for c in df.columns if c[1]), key=lambda m: m != sort_by)
    shown, left_out, table = [], [], None
    for metric in metrics:
        t = Table(title="Score sweep", title_justify="left", collapse_padding=True)
        for col, w in zip(IDS[:3], (17, 15, 7)):
            t.add_column(wrap(col, w))
        for m, d in (cols := [c for m in shown + [metric] for c in df.columns if c[0] == m]):
            t.add_column(wrap(m, 7) + "\n" + wrap(d, 7), justify="right")
        for _, row in df.iterrows():
            t.add_row(wrap(row.iloc[0], 17), wrap(row.iloc[1], 15), str(row.iloc[2]).lower(),
                      *(row.iloc[3] if row.iloc[3] != "ok" else "-" if pd.isna(row[c]) else f"{row[c]:.4f}"
                        for c in cols))
        if table is not None and Measurement.get(console := Console(width=1000), console.options, t).maximum > width:
            left_out.append(metric)
        else:
            table, shown = t, shown + [metric]
    return table, left_out


def positive(text: str) -> int:
    try:
        if (value := int(text)) >= 1:
            return value
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m labelbench.ops.sweep", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", "-j", type=positive, default=2, help="queue workers (default 2)")
    p.add_argument("--methods", type=lambda s: s.split(","), help="comma-separated score methods (default all)")
    p.add_argument("--sort-by", default="auroc", help="metric whose mean sorts the table (default auroc)")
    p.add_argument("--repo", type=Path, default=Path("."), help="DVC repository (default .)")
    p.add_argument("--output", default="reports/sweep.md", help="markdown table, relative to --repo")
    p.add_argument("--width", type=positive, default=int(os.environ.get("COLUMNS", 160)), help="console width")
    args = p.parse_args(argv)
    try:  # every argument is checked before the first dvc command (which removes earlier experiments)
        planned, skipped = variants(args.methods)
        metrics = metric_names(load_params(EvaluateParams, args.repo / "params.yaml").lift_k)
    except ValueError as exc:  # an unknown method, or a ParamsError
        p.error(str(exc))
    if args.sort_by not in metrics:
        p.error(f"--sort-by {args.sort_by}: not a metric of the evaluate stage; allowed: {', '.join(metrics)}")
    show = json.loads(dvc(args.repo, "exp", "show", "--json", echo=True).stdout)
    if old := [r["rev"] if r.get("error") else r["name"] for r in revs(show, planned)]:
        dvc(args.repo, "exp", "remove", *old, capture=False, echo=True)
    for name, (method, adjust) in planned.items():
        dvc(args.repo, "exp", "run", "--queue", "-S", f"score={method}", "-S",
            f"adjust_pred_probs={str(adjust).lower()}", "-n", name, "evaluate", "published", capture=False, echo=True)
    dvc(args.repo, "exp", "run", "--run-all", "-j", str(args.jobs), capture=False, echo=True)
    show = json.loads(dvc(args.repo, "exp", "show", "--json", "--hide-queued", echo=True).stdout)
    df = table(show, planned, args.sort_by)
    if (args.sort_by, "mean") not in df and len(df.columns) > len(IDS):
        p.error(f"--sort-by {args.sort_by}: not a metric of {sorted({c[0] for c in df.columns[len(IDS):]})}")
    rich, left_out = rich_table(df, args.width, args.sort_by)
    failed = sorted(set(planned) - set(df[("experiment", "")][df[("state", "")] == "ok"]))
    notes = ([f"Not run (invalid pair): {s}" for s in skipped]
             + [f"Failed (see `dvc queue logs <task>`): {n}" for n in failed])
    hidden = [f"Not shown at width {args.width}, see {args.output}: {', '.join(left_out)}"] if left_out else []
    Console(width=args.width).print(rich, *notes, *hidden, sep="\n")
    flat = df.set_axis([" ".join(filter(None, c)) for c in df.columns], axis=1)
    md = flat.to_markdown(index=False, floatfmt=".4f", missingval="-")
    write_text(args.repo / args.output, "# Score sweep\n\n" + md + "\n\n" + "\n\n".join(notes) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
