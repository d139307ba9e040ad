"""The multi-annotator track: alignment by image id, refusal of damaged inputs, metrics against hand
checks and direct computations, the stage on a generated CIFAR-10N-like root, and on the real data."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO_ROOT, load_stage, run, small_clone, stages_run, venv_env
from labelbench.config import ParamsError, load_params
from labelbench.data.io import DataError
from labelbench.evaluation import multiannotator as ma
from labelbench.evaluation.ensembles import short_model
from labelbench.evaluation.params import CROWD_BASELINES, MultiannotatorParams
from labelbench.evaluation.scores import label_quality_scores

MODELS = ["resnet18", "swin_base_patch4_window7_224"]


def make_root(root, *, n=200, order=None, seed=0, sharpness=(2.0, 4.0)):
    """A published-style root: ``<root>/cifar-10n-agg`` whose row r is npz image ``order[r]`` (a
    permutation by default), and ``<root>/raw/cifar-10n_human_labels.npz``. Slots are right with
    probability 0.9, 0.75 and 0.6; pred_probs lean to the clean label."""
    rng = np.random.default_rng(seed)
    clean = rng.permutation(np.arange(n) % 10)
    slots = []
    for p in (0.9, 0.75, 0.6):
        wrong = rng.random(n) > p
        slots.append(np.where(wrong, (clean + rng.integers(1, 10, n)) % 10, clean))
    votes = np.stack(slots, 1)
    counts = np.stack([(votes == k).sum(1) for k in range(10)], 1)
    aggre = np.where(counts.max(1) > 1, counts.argmax(1), votes[:, 0])
    worse = np.where(votes != clean[:, None], votes, -1).max(1)
    worse = np.where(worse < 0, clean, worse)
    (root / "raw").mkdir(parents=True)
    np.savez(root / ma.HUMAN_LABELS, clean_label=clean, aggre_label=aggre, worse_label=worse,
             random_label1=slots[0], random_label2=slots[1], random_label3=slots[2])
    permutation = rng.permutation(n)
    order = permutation if order is None else np.asarray(order)
    folder = root / "cifar-10n-agg"
    (folder / "pred_probs").mkdir(parents=True)
    np.save(folder / "given_labels.npy", aggre[order])
    np.save(folder / "true_labels.npy", clean[order])
    np.save(folder / "label_errors.npy", aggre[order] != clean[order])
    (folder / "image_ids.txt").write_text("".join(f"train/image_id_{i}.png\n" for i in order))
    for lean, model in zip(sharpness, MODELS):  # drawn per image, then put in row order
        logits = rng.normal(size=(n, 10)) + lean * np.eye(10)[clean]
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        np.save(folder / "pred_probs" / f"{model}.npy", probs[order])
    return {"clean": clean, "aggre": aggre, "slots": votes, "order": order}


def write_sums(root):
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}"
             for p in sorted(root.rglob("*")) if p.is_file()]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


TRACK_ARGS = dict(baselines=list(CROWD_BASELINES), dawid_skene_max_iter=100, glad_max_iter=100,
                  score="self_confidence", ensemble="avg_scores_weighted_by_inv_log_loss", lift_k=5)


# --- alignment by image id --------------------------------------------------------------------


def test_rows_are_joined_by_image_id_not_position(tmp_path):
    truth = make_root(tmp_path)
    assert not np.array_equal(truth["order"], np.arange(200))
    track = ma.load_track(tmp_path, dataset="cifar-10n-agg", models=MODELS)
    np.testing.assert_array_equal(track.annotations.to_numpy(), truth["slots"][truth["order"]])
    np.testing.assert_array_equal(track.clean, truth["clean"][truth["order"]])
    np.testing.assert_array_equal(track.majority, track.dataset.given_labels)
    assert list(track.annotations.columns) == list(ma.ANNOTATORS)


def test_the_track_does_not_depend_on_the_row_order(tmp_path):
    permuted, ordered = tmp_path / "permuted", tmp_path / "ordered"
    make_root(permuted, seed=3)
    make_root(ordered, seed=3, order=np.arange(200))
    tables = [ma.run_track(ma.load_track(r, dataset="cifar-10n-agg", models=MODELS), **TRACK_ARGS)[0]
              for r in (permuted, ordered)]
    # lift@k breaks ties at the cut by row position (the authors' definition), and majority vote's
    # quality (share of agreeing slots) is all ties: compare everything else (GLAD's gradient steps
    # stop at a tolerance, so its alphas move in the 7th digit with the order of the sums)
    lifts = [c for c in tables[0].columns if c.startswith("lift_at_")]
    pd.testing.assert_frame_equal(tables[0].drop(columns=lifts), tables[1].drop(columns=lifts), rtol=1e-6, atol=0)


def test_ids_out_of_step_with_the_arrays_are_refused(tmp_path):
    make_root(tmp_path)
    ids = tmp_path / "cifar-10n-agg" / "image_ids.txt"
    lines = ids.read_text().splitlines()
    ids.write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # a valid permutation, but not the rows'
    with pytest.raises(DataError, match=r"image_ids.txt: joined by image id, cifar-10n_human_labels.npz's"):
        ma.load_track(tmp_path, dataset="cifar-10n-agg", models=MODELS)


@pytest.mark.parametrize("ids, message", [
    (["train/image_id_0.png", "train/image_7.png"], r"1 id\(s\) are not 'train/image_id_<i>.png', e.g. \['train/image_7.png'\]"),
    (["train/image_id_0.png", "train/image_id_01.png"], r"1 id\(s\) are not 'train/image_id_<i>.png'"),
    (["train/image_id_0.png", "train/image_id_3.png"], r"1 id\(s\) outside the 3 images .* image_id_3"),
    (["train/image_id_2.png", "train/image_id_2.png"], r"1 repeated id\(s\), e.g. image_id_2"),
])
def test_bad_image_ids_are_refused_naming_the_file(ids, message):
    with pytest.raises(DataError, match=r"^ids.txt: " + message):
        ma.npz_index(ids, path="ids.txt", size=3)


# --- damaged human labels ---------------------------------------------------------------------


def _rewrite_npz(root, **changes):
    path = root / ma.HUMAN_LABELS
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


@pytest.mark.parametrize("change, message", [
    (dict(random_label2=None), r"missing array\(s\) \['random_label2'\]"),
    (dict(random_label3=np.zeros(199, np.int64)), r"random_label3 must be an int \(N,\) array like clean_label \(200,\)"),
    (dict(random_label1=np.zeros((200, 2), np.int64)), r"random_label1 must be an int \(N,\) array"),
    (dict(random_label1=np.full(200, 0.5)), r"random_label1 must be an int \(N,\) array"),
    (dict(random_label3=np.full(200, 10)), r"random_label3 outside \[0, 10\)"),
    (dict(clean_label=None), r"missing array\(s\) \['clean_label'\]"),
    (dict(random_label1=np.array([{"x": 1}] * 200, dtype=object)), r"not a readable .npz without pickles"),
])
def test_a_damaged_npz_is_refused_naming_the_file(tmp_path, change, message):
    make_root(tmp_path)
    _rewrite_npz(tmp_path, **change)
    with pytest.raises(DataError, match=r"cifar-10n_human_labels.npz: " + message):
        ma.load_track(tmp_path, dataset="cifar-10n-agg", models=MODELS)


def test_an_npz_changed_after_its_checksum_is_refused(tmp_path):
    make_root(tmp_path)
    write_sums(tmp_path)
    ma.load_track(tmp_path, dataset="cifar-10n-agg", models=MODELS)  # the recorded bytes load
    _rewrite_npz(tmp_path, random_label1=np.zeros(200, np.int64))
    with pytest.raises(DataError, match=r"cifar-10n_human_labels.npz: differs from .*SHA256SUMS"):
        ma.load_track(tmp_path, dataset="cifar-10n-agg", models=MODELS)


def test_the_npz_must_be_there(tmp_path):
    make_root(tmp_path)
    (tmp_path / ma.HUMAN_LABELS).unlink()
    with pytest.raises(DataError, match="cifar-10n_human_labels.npz: file not found"):
        ma.load_track(tmp_path, dataset="cifar-10n-agg", models=MODELS)


# --- metrics against hand checks ----------------------------------------------------------------


def test_row_metrics_by_hand():
    aggregate = ma.Aggregate(consensus=np.array([0, 1, 2, 3]), quality=np.array([0.9, 0.2, 0.3, 0.7]),
                             annotator_quality=np.array([0.5, 0.9, 0.7]))
    out = ma.row_metrics(aggregate, clean=np.array([0, 1, 0, 3]), annotator_accuracy=np.array([0.6, 0.8, 0.7]),
                         lift_k=1)
    # one wrong consensus (row 2, quality 0.3): it scores below 2 of the 3 right ones -> AUROC 2/3;
    # ranked by 1 - quality, a right one (0.2) comes first, then the wrong one -> AP 1/2;
    # the top-1 is right -> lift@1 0; the estimated slot ranks equal the true ones -> Spearman 1.
    assert out == {"consensus_accuracy": 0.75, "num_wrong_consensus": 1, "auroc": pytest.approx(2 / 3, abs=1e-12),
                   "auprc": 0.5, "lift_at_1": 0.0, "lift_at_num_errors": 0.0, "annotator_spearman": 1.0,
                   "annotator_quality:random_label1": 0.5, "annotator_quality:random_label2": 0.9,
                   "annotator_quality:random_label3": 0.7}
    reverse = ma.row_metrics(aggregate, clean=np.array([0, 1, 0, 3]), annotator_accuracy=np.array([0.8, 0.6, 0.7]),
                             lift_k=1)
    assert reverse["annotator_spearman"] == -1.0


def test_row_metrics_without_scores_or_errors_are_nan():
    right = ma.row_metrics(ma.Aggregate(consensus=np.array([0, 1]), quality=np.array([0.5, 0.5])),
                           clean=np.array([0, 1]), annotator_accuracy=np.array([0.6, 0.8, 0.7]), lift_k=1)
    assert right["consensus_accuracy"] == 1.0 and math.isnan(right["auroc"]) and math.isnan(right["annotator_spearman"])
    assert math.isnan(ma.spearman(np.array([0.5, 0.5, 0.5]), np.array([0.6, 0.8, 0.7])))


def test_majority_vote_by_hand():
    annotations = pd.DataFrame([[0, 0, 1], [2, 2, 2], [3, 4, 5]], columns=list(ma.ANNOTATORS))
    out = ma.majority_vote(annotations, np.array([0, 2, 3]))
    np.testing.assert_allclose(out.quality, [2 / 3, 1, 1 / 3])
    np.testing.assert_allclose(out.annotator_quality, [1, 2 / 3, 1 / 3])


def test_the_baseline_registry_matches_the_params_schema():
    assert tuple(ma.BASELINES) == CROWD_BASELINES


def test_rows_match_direct_computations(tmp_path):
    """Each row against cleanlab / crowd-kit / scikit-learn called directly on the npz, joined by hand."""
    from cleanlab.multiannotator import get_label_quality_multiannotator
    from crowdkit.aggregation import GLAD, DawidSkene
    from scipy.stats import spearmanr
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = make_root(tmp_path)
    table, summary, seconds = ma.run_track(ma.load_track(tmp_path, dataset="cifar-10n-agg", models=MODELS),
                                           **TRACK_ARGS)
    order, clean = truth["order"], truth["clean"][truth["order"]]
    slots = truth["slots"][order]
    true_accuracy = (slots == clean[:, None]).mean(0)
    probs = np.load(tmp_path / "cifar-10n-agg" / "pred_probs" / f"{MODELS[1]}.npy")
    result = get_label_quality_multiannotator(slots, probs, verbose=False)
    consensus = result["label_quality"]["consensus_label"].to_numpy()
    wrong = consensus != clean
    row = table[(table.method == "crowdlab") & (table.model == MODELS[1])].iloc[0]
    assert row.consensus_accuracy == (~wrong).mean()
    assert row.auroc == pytest.approx(roc_auc_score(wrong, -result["label_quality"]["consensus_quality_score"]), abs=1e-12)
    assert row.auprc == pytest.approx(
        average_precision_score(wrong, 1 - result["label_quality"]["consensus_quality_score"]), abs=1e-12)
    assert row.annotator_spearman == spearmanr(result["annotator_stats"].sort_index()["annotator_quality"],
                                               true_accuracy).statistic
    long = pd.DataFrame({"task": np.repeat(np.arange(200), 3), "worker": np.tile([0, 1, 2], 200),
                         "label": slots.ravel()})
    ds = DawidSkene(n_iter=100).fit_predict(long).sort_index().to_numpy()
    row = table[table.method == "dawid_skene"].iloc[0]
    assert row.consensus_accuracy == (ds == clean).mean()
    assert row.annotator_spearman == 1.0  # slots of accuracy 0.9 / 0.75 / 0.6 are told apart
    glad = GLAD(n_iter=100).fit(long)
    row = table[table.method == "glad"].iloc[0]
    assert row.consensus_accuracy == (glad.labels_.sort_index().to_numpy() == clean).mean()
    assert row.annotator_spearman == spearmanr(glad.alphas_.sort_index(), true_accuracy).statistic == 1.0

    majority = table[table.method == "majority_vote"].iloc[0]
    assert majority.consensus_accuracy == (truth["aggre"] == truth["clean"]).mean()
    single = table[(table.method == "self_confidence") & (table.model == MODELS[0])].iloc[0]
    mv_wrong = truth["aggre"][order] != clean
    assert single.auroc == pytest.approx(roc_auc_score(mv_wrong, 1 - probs_of(tmp_path, MODELS[0], truth)), abs=1e-12)
    assert summary["consensus_accuracy"]["majority_vote"] == majority.consensus_accuracy
    assert summary["annotator_accuracy"] == dict(zip(ma.ANNOTATORS, true_accuracy))
    assert set(table.method) == {"crowdlab", "majority_vote", "dawid_skene", "glad", "self_confidence"}
    # one entry per job: CROWDLAB per model, the single-label scores of every model and their ensemble together
    assert list(seconds) == list(dict.fromkeys(f"{m}:{d}" if m == "crowdlab" else m for m, d in zip(table.method, table.model)))


def test_the_crowdlab_ensemble_row_and_the_best_row_match_cleanlab(tmp_path):
    """The ensemble row is cleanlab's `get_label_quality_multiannotator_ensemble` of every model (not CROWDLAB of
    averaged pred_probs); the summary's best row is the one of the highest consensus accuracy (not of the highest
    AUROC). Weaker models than the other tests' so that no row is perfect."""
    from cleanlab.multiannotator import get_label_quality_multiannotator, get_label_quality_multiannotator_ensemble
    from sklearn.metrics import roc_auc_score

    truth = make_root(tmp_path, sharpness=(0.5, 1.5))
    table, summary, _ = ma.run_track(ma.load_track(tmp_path, dataset="cifar-10n-agg", models=MODELS),
                                     **{**TRACK_ARGS, "baselines": []})
    order = truth["order"]
    clean, slots = truth["clean"][order], truth["slots"][order]
    probs = [np.load(tmp_path / "cifar-10n-agg" / "pred_probs" / f"{m}.npy") for m in MODELS]
    direct = {m: get_label_quality_multiannotator(slots, p, verbose=False) for m, p in zip(MODELS, probs)}
    direct["ensemble"] = get_label_quality_multiannotator_ensemble(slots, np.stack(probs), verbose=False)
    accuracy, auroc = {}, {}
    for model, found in direct.items():
        consensus, quality = (found["label_quality"][c].to_numpy() for c in ("consensus_label", "consensus_quality_score"))
        accuracy[model], auroc[model] = (consensus == clean).mean(), roc_auc_score(consensus != clean, -quality)
        row = table[(table.method == "crowdlab") & (table.model == model)].iloc[0]
        assert (row.consensus_accuracy, row.auroc) == (accuracy[model], pytest.approx(auroc[model], abs=1e-12)), model
    assert 0.5 < min(accuracy.values()) and max(accuracy.values()) < 1  # every row has wrong consensus labels
    best = max(accuracy, key=accuracy.get)  # the first of the table's order (models, then the ensemble) on a tie
    assert best != max(auroc, key=auroc.get)  # the data tell the two rules apart
    assert summary["consensus_accuracy"]["crowdlab_best"] == accuracy[best]
    assert summary["auroc"]["crowdlab_best"] == pytest.approx(auroc[best], abs=1e-12)


def probs_of(root, model, truth):
    """self_confidence of the majority vote (the label the rows' models were trained on)."""
    probs = np.load(root / "cifar-10n-agg" / "pred_probs" / f"{model}.npy")
    return probs[np.arange(len(truth["order"])), truth["aggre"][truth["order"]]]


# --- the report section -------------------------------------------------------------------------


def test_markdown_section(tmp_path):
    make_root(tmp_path)
    table, summary, _ = ma.run_track(ma.load_track(tmp_path, dataset="cifar-10n-agg", models=MODELS), **TRACK_ARGS)
    text = ma.markdown_section(table=table, summary=summary)
    lines = text.splitlines()
    assert lines[0] == "## Multi-annotator track (CIFAR-10N)"
    assert "trained on `aggre_label`, the majority vote" in text and "they have seen the majority vote" in text
    header = next(i for i, line in enumerate(lines) if line.startswith("| method"))
    rows = lines[header + 2: header + 2 + len(table)]
    assert len(rows) == len(table) and lines[header + 2 + len(table)] == ""
    crowdlab = rows[list(table.model).index(MODELS[1])]
    cells = [c.strip() for c in crowdlab.strip("|").split("|")]
    expected = table[table.model == MODELS[1]].iloc[0]
    assert cells[:5] == ["crowdlab", short_model(MODELS[1]), f"{expected.consensus_accuracy:.4f}",
                         str(expected.num_wrong_consensus), f"{expected.auroc:.4f}"]
    assert crowdlab.rstrip("|").split("|")[-1].strip() == f"{expected.annotator_spearman:.4f}"
    single = rows[-1]  # the single-label ensemble estimates no annotator quality
    assert single.rstrip("|").split("|")[-1].strip() == "–"
    bullets = [line for line in lines if line.startswith("- `")]
    metrics = ["consensus_accuracy", "num_wrong_consensus", "auroc", "auprc", "lift_at_5", "lift_at_num_errors",
               "annotator_spearman"]
    assert [b.split("`")[1] for b in bullets] == metrics
    assert all(b.endswith(".") and len(b) > 40 for b in bullets)
    assert "swin_base_patch4_window7_224" not in text and short_model("swin_base_patch4_window7_224") == "swin_base"


# --- params -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, message", [
    ("baselines", ["dawid_skene", "mace"], "multiannotator.baselines = ['dawid_skene', 'mace']: Value error, "
                                          "unknown ['mace']; allowed: dawid_skene, glad"),
    ("baselines", ["glad", "glad"], "baselines must be unique"),
    ("dataset", "cifar-10s", "multiannotator.dataset = 'cifar-10s': Input should be 'cifar-10n-agg' or "
                             "'cifar-10n-worst'"),
    ("glad_max_iter", 0, "multiannotator.glad_max_iter = 0: Input should be greater than or equal to 1"),
    ("score", "nope", "unknown score method 'nope'"),
    ("ensemble", "median", "unknown ensemble scheme 'median'"),
    ("seed", 0, "multiannotator.seed = 0: Extra inputs are not permitted; allowed: dataset, baselines, "
             "dawid_skene_max_iter, glad_max_iter, score, ensemble"),
])
def test_bad_params_are_refused(tmp_path, key, value, message):
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["multiannotator"][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ParamsError, match="params.yaml: .*" + _escape(message)):
        load_params(MultiannotatorParams, tmp_path / "params.yaml")


def _escape(text):
    import re

    return re.escape(text)


# --- the stage ----------------------------------------------------------------------------------


@pytest.fixture
def stage_dir(tmp_path, monkeypatch):
    make_root(tmp_path / "published")
    write_sums(tmp_path / "published")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["published"]["models"] = MODELS
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_stage_writes_its_outputs(stage_dir):
    """In a process of its own, as DVC runs it: in this one numpy loaded before the stage's numerics pins, which it
    refuses (tests/test_numerics.py)."""
    argv = ["--published", "published", "--out", "metrics", "--section", "reports/multiannotator.md"]
    env = {**venv_env(), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "stages" / "multiannotator.py"), *argv], cwd=stage_dir,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(stage_dir / "metrics" / "multiannotator.csv", keep_default_na=False, na_values=[""])
    assert list(zip(table.method, table.model.replace(np.nan, ""))) == (
        [("crowdlab", m) for m in MODELS] + [("crowdlab", "ensemble"), ("majority_vote", ""), ("dawid_skene", ""),
                                            ("glad", "")]
        + [("self_confidence", m) for m in MODELS] + [("self_confidence", "ensemble:avg_scores_weighted_by_inv_log_loss")])
    summary = json.loads((stage_dir / "metrics" / "multiannotator.json").read_text())
    assert summary["consensus_accuracy"]["crowdlab_best"] == table[table.method == "crowdlab"].consensus_accuracy.max()
    section = (stage_dir / "reports" / "multiannotator.md").read_text()
    assert section == ma.markdown_section(table=table, summary=summary)
    assert "glad" in done.stdout and " s\n" in done.stdout
    assert sorted(p.name for p in (stage_dir / "metrics").iterdir()) == ["multiannotator.csv", "multiannotator.json"]


def test_stage_without_the_dataset_among_the_evaluated_ones_writes_empty_outputs(stage_dir, capsys):
    params = yaml.safe_load((stage_dir / "params.yaml").read_text())
    params["published"]["datasets"] = ["roman-numeral"]
    (stage_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    argv = ["--published", "published", "--out", "metrics", "--section", "reports/multiannotator.md"]
    assert load_stage("multiannotator").main(argv) == 0
    assert "cifar-10n-agg is not among published.datasets" in capsys.readouterr().out
    assert (stage_dir / "metrics" / "multiannotator.csv").read_text() == ",".join(ma.table_columns(100)) + "\n"
    assert json.loads((stage_dir / "metrics" / "multiannotator.json").read_text()) == {}
    assert "Not evaluated" in (stage_dir / "reports" / "multiannotator.md").read_text()


def test_stage_refuses_a_lift_k_above_the_dataset_size_naming_the_key(stage_dir, capsys):
    params = yaml.safe_load((stage_dir / "params.yaml").read_text())
    params["lift_k"] = 10**6
    (stage_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert load_stage("multiannotator").main(["--published", "published", "--out", "metrics"]) == 1
    assert "error: params.yaml: lift_k = 1000000: must be in [1, " in capsys.readouterr().err
    assert not (stage_dir / "metrics").exists()


def test_stage_refuses_bad_inputs_and_keeps_old_outputs(stage_dir, capsys):
    (stage_dir / "metrics").mkdir()
    (stage_dir / "metrics" / "multiannotator.csv").write_text("old\n")
    _rewrite_npz(stage_dir / "published", random_label2=None)
    assert load_stage("multiannotator").main(["--published", "published", "--out", "metrics"]) == 1
    assert "published/raw/cifar-10n_human_labels.npz: differs from" in capsys.readouterr().err
    assert (stage_dir / "metrics" / "multiannotator.csv").read_text() == "old\n"
    assert not (stage_dir / "metrics" / "multiannotator.json").exists()


# --- the real data ----------------------------------------------------------------------------


def test_real_cifar10n(published):
    """Published rows are not in npz order; CROWDLAB with Swin beats the majority vote; the single-label
    row reproduces the benchmark's cifar-10n-agg number (an independent stage on the same files)."""
    swin = "swin_base_patch4_window7_224"
    track = ma.load_track(published, dataset="cifar-10n-agg", models=[swin])
    with np.load(published / ma.HUMAN_LABELS, allow_pickle=False) as npz:
        majority_accuracy = (npz["aggre_label"] == npz["clean_label"]).mean()
    index = ma.npz_index(track.dataset.image_ids, path="ids", size=50_000)
    assert not np.array_equal(index, np.arange(50_000))
    accuracy = track.annotator_accuracy().to_numpy()
    rows = {name: ma.row_metrics(aggregate, clean=track.clean, annotator_accuracy=accuracy, lift_k=100)
            for name, aggregate in [
                ("crowdlab", ma.crowdlab(track.annotations, track.dataset.pred_probs[swin])),
                ("majority", ma.majority_vote(track.annotations, track.majority)),
                ("single", ma.Aggregate(consensus=track.majority, quality=label_quality_scores(
                    labels=track.majority, pred_probs=track.dataset.pred_probs[swin], method="self_confidence")))]}
    assert rows["majority"]["consensus_accuracy"] == majority_accuracy
    assert rows["crowdlab"]["consensus_accuracy"] > majority_accuracy + 0.05
    benchmark = pd.read_csv(REPO_ROOT / "metrics" / "benchmark.csv")
    expected = benchmark[(benchmark.dataset == "cifar-10n-agg") & (benchmark.model == swin)
                         & (benchmark.method == "self_confidence") & ~benchmark.adjust_pred_probs].iloc[0]
    for metric in ("auroc", "auprc", "lift_at_100", "lift_at_num_errors"):
        assert rows["single"][metric] == pytest.approx(expected[metric], abs=1e-12)


def test_dvc_repro_multiannotator(tmp_path):
    """The stage as dvc.yaml runs it, in a clone (one model, no GLAD, to stay quick); a rerun is a no-op."""
    repo = small_clone(tmp_path, published=["cifar-10n-agg"], trained=False, folds=None)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["published"]["models"] = ["resnet18"]
    params["multiannotator"]["baselines"] = ["dawid_skene"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "one model"], repo)
    run(["dvc", "pull", "-q", "data/published"], repo)
    result = run(["dvc", "repro", "multiannotator"], repo)
    assert stages_run(result.stdout) == ["multiannotator"]
    table = pd.read_csv(repo / "metrics" / "multiannotator.csv")
    assert list(table.method) == ["crowdlab", "crowdlab", "majority_vote", "dawid_skene", "self_confidence",
                                  "self_confidence"]
    assert (repo / "reports" / "multiannotator.md").read_text().startswith(ma.SECTION_TITLE)
    assert stages_run(run(["dvc", "repro", "multiannotator"], repo).stdout) == []
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    assert "metrics/multiannotator.json" in json.dumps(shown)
