"""Detectors beyond pred_probs (labelbench.evaluation.detectors): a hand-computed toy case per score, AUM against the
`aum` package (Pleiss et al.'s reference implementation), and the registry's errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelbench.evaluation import detectors as d

# 3 epochs x 3 examples x 2 classes; given labels 0, 1, 0
LOGITS = np.array([
    [[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]],
    [[3.0, 1.0], [1.0, 0.0], [1.0, 0.0]],
    [[1.0, 0.0], [0.0, 2.0], [0.0, 1.0]],
])
LABELS = np.array([0, 1, 0])


def test_aum_is_the_mean_margin_of_the_given_label():
    # margins: example 0: 2, 2, 1; example 1: 1, -1, 2; example 2: -3, 1, -1
    np.testing.assert_allclose(d.aum(logits=LOGITS, labels=LABELS), [5 / 3, 2 / 3, -1])


def test_forgetting_counts_learned_then_forgotten_and_ranks_never_learned_first():
    # correct per epoch: example 0 TTT (0 events), 1 TFT (1), 2 FTF (1)
    np.testing.assert_array_equal(d.forgetting(logits=LOGITS, labels=LABELS), [0, -1, -1])
    never = np.array([[[0.0, 1.0]], [[0.0, 2.0]]])  # 2 epochs, label 0, never predicted
    assert d.forgetting(logits=never, labels=np.array([0])).tolist() == [-2.0]


def test_small_loss_is_minus_the_mean_cross_entropy():
    def ce(z, y):
        return -(z[y] - math.log(sum(math.exp(v) for v in z)))
    expected = [-np.mean([ce(LOGITS[e, i], LABELS[i]) for e in range(3)]) for i in range(3)]
    np.testing.assert_allclose(d.small_loss(logits=LOGITS, labels=LABELS), expected, rtol=0, atol=1e-12)


def test_datamaps_confidence_and_variability():
    def p(z, y):
        return math.exp(z[y]) / sum(math.exp(v) for v in z)
    probs = np.array([[p(LOGITS[e, i], LABELS[i]) for e in range(3)] for i in range(3)])
    np.testing.assert_allclose(d.datamaps_confidence(logits=LOGITS, labels=LABELS), probs.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(d.datamaps_variability(logits=LOGITS, labels=LABELS), probs.std(axis=1), atol=1e-12)
    # two classes: softmax(z)[y] = sigmoid(margin); example 0 at epoch 0: sigmoid(2)
    assert probs[0, 0] == pytest.approx(1 / (1 + math.exp(-2)), abs=1e-15)


def test_el2n_at_an_early_epoch():
    # epoch 1, example 2: softmax([1, 0]) = (s, 1 - s), label 0: error (s - 1, 1 - s), norm sqrt(2) (1 - s)
    s = 1 / (1 + math.exp(-1))
    assert d.el2n(logits=LOGITS, labels=LABELS, epoch=1)[2] == pytest.approx(-math.sqrt(2) * (1 - s), abs=1e-12)
    # a run of fewer epochs than the param: its last
    np.testing.assert_array_equal(d.el2n(logits=LOGITS, labels=LABELS, epoch=7), d.el2n(logits=LOGITS, labels=LABELS,
                                                                                        epoch=2))
    with pytest.raises(ValueError, match="must be >= 0"):
        d.el2n(logits=LOGITS, labels=LABELS, epoch=-1)


def test_over_folds_averages_the_folds_that_trained_on_each_example():
    combined = d.over_folds([(np.array([0, 1]), np.array([1.0, 2.0])), (np.array([1, 2]), np.array([4.0, 6.0]))], 3)
    np.testing.assert_allclose(combined, [1.0, 3.0, 6.0])
    with pytest.raises(ValueError, match="1 examples are in no fold"):
        d.over_folds([(np.array([0]), np.array([1.0]))], 2)
    # NaN: that fold never drew the row; a row no fold drew gets the others' median
    partial = d.over_folds([(np.array([0, 1, 2]), np.array([1.0, np.nan, np.nan])),
                            (np.array([1, 2, 3]), np.array([3.0, np.nan, 5.0]))], 4)
    np.testing.assert_allclose(partial, [1.0, 3.0, 3.0, 5.0])


# reference: two tight clusters in 2-D, class 0 along x, class 1 along y; one reference point of class 1 is
# mislabeled as 0 inside the y cluster
REFERENCE = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0], [0.1, 1.0], [-0.1, 1.0], [0.05, 1.0]])
REFERENCE_LABELS = np.array([0, 0, 0, 1, 1, 1, 0])


def test_knn_agreement_is_the_share_of_neighbours_with_the_given_label():
    points = np.array([[1.0, 0.02], [0.02, 1.0], [0.02, 1.0]])
    labels = np.array([0, 1, 0])  # the third is mislabeled: it sits in the y cluster
    scores = d.knn_agreement(embeddings=points, labels=labels, reference=REFERENCE, reference_labels=REFERENCE_LABELS,
                             k=4)
    # the x-cluster point: its three references (label 0), then the y-cluster reference nearest in angle, (0.1, 1),
    # labelled 1; the y-cluster points: the four y-cluster references, three labelled 1 and one labelled 0
    np.testing.assert_allclose(scores, [3 / 4, 3 / 4, 1 / 4])
    with pytest.raises(ValueError, match="between 1 and the 7 reference examples"):
        d.knn_agreement(embeddings=points, labels=labels, reference=REFERENCE, reference_labels=REFERENCE_LABELS, k=8)


def test_simifeat_vote_is_the_given_labels_share_minus_the_best_other():
    points = np.array([[0.02, 1.0], [0.02, 1.0]])
    scores = d.simifeat_vote(embeddings=points, labels=np.array([1, 0]), reference=REFERENCE,
                             reference_labels=REFERENCE_LABELS, k=4)
    np.testing.assert_allclose(scores, [3 / 4 - 1 / 4, 1 / 4 - 3 / 4])


def test_registry_names_the_valid_detectors():
    assert d.family_of("aum") == "training_dynamics" and d.TRAINING_DYNAMICS["aum"] is d.aum
    assert d.family_of("knn_agreement") == "representation" and d.REPRESENTATION["knn_agreement"] is d.knn_agreement
    assert d.family_of("self_confidence") == d.family_of("aurm") == "pred_probs"


def test_aum_ranks_as_the_aum_package(tmp_path):
    """The reference implementation (pip `aum`, the authors' AUMCalculator), fed the same logits epoch by epoch."""
    import torch
    from aum import AUMCalculator

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 200, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=200)
    logits[:, :150][np.arange(6)[:, None], np.arange(150)[None, :], labels[None, :150]] += 2.0  # learnable ones
    calculator = AUMCalculator(str(tmp_path))
    for epoch in logits:
        calculator.update(torch.from_numpy(epoch), torch.from_numpy(labels), list(range(200)))
    reference = np.array([calculator.sums[i] / calculator.counts[i] for i in range(200)])
    ours = d.aum(logits=logits, labels=labels)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)  # the package sums float32 margins
    assert (np.argsort(ours, kind="stable") == np.argsort(reference, kind="stable")).mean() > 0.99


def test_an_epoch_that_did_not_train_on_an_example_is_left_out():
    """Each epoch drops its ragged last batch: that example's logits are NaN there, and every score uses the epochs
    that saw it (forgetting counts the transition across the gap)."""
    gap = LOGITS.copy()
    gap[1, 1] = np.nan  # example 1 unseen in epoch 1: correct, -, correct
    np.testing.assert_allclose(d.aum(logits=gap, labels=LABELS)[1], (1 + 2) / 2)
    assert d.forgetting(logits=gap, labels=LABELS)[1] == 0
    gap[1, 2] = np.nan  # example 2: wrong, -, wrong: never learned
    assert d.forgetting(logits=gap, labels=LABELS)[2] == -3
    unseen = np.full((2, 1, 2), np.nan)  # never drawn: no evidence, NaN (over_folds fills it)
    for name, score in d.TRAINING_DYNAMICS.items():
        assert np.isnan(score(logits=unseen, labels=np.array([0]))).all(), name
    for name in ("small_loss", "datamaps_confidence", "datamaps_variability"):
        assert np.isfinite(d.TRAINING_DYNAMICS[name](logits=gap, labels=LABELS)).all(), name
    np.testing.assert_allclose(d.el2n(logits=gap, labels=LABELS, epoch=1)[1], d.el2n(logits=LOGITS, labels=LABELS,
                                                                                    epoch=2)[1])


def test_record_scores_combine_the_folds_records(tmp_path):
    """Two folds' records on disk (as crossval writes them): training dynamics averaged over the folds that trained
    on each example, representation scores for each fold's held-out rows."""
    from labelbench.data.files import write_npy

    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 0, 1, 0, 1])
    folds = [np.array([0, 1, 2]), np.array([3, 4, 5])]  # held out
    features = rng.normal(size=(6, 4)).astype(np.float16)
    dirs, expected, el2n = [], [], {0: np.empty(6), 2: np.empty(6)}
    for k, held in enumerate(folds):
        train = np.setdiff1d(np.arange(6), held)
        logits = rng.normal(size=(3, len(train), 2)).astype(np.float32)
        for epoch, values in el2n.items():  # each row trained in one fold; minus ||softmax - onehot|| at that epoch
            z = logits[epoch].astype(np.float64)
            probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            values[train] = -np.linalg.norm(probs - np.eye(2)[labels[train]], axis=1)
        fold = tmp_path / f"fold_{k}"
        (fold / "records").mkdir(parents=True)
        write_npy(fold / "heldout_indices.npy", held)
        write_npy(fold / "records" / "train_indices.npy", train)
        write_npy(fold / "records" / "train_logits.npy", logits)
        write_npy(fold / "records" / "embeddings.npy", features)
        dirs.append(fold)
        expected.append((train, d.aum(logits=logits, labels=labels[train])))
    scores = d.record_scores(dirs, labels=labels, neighbours=2, el2n_epoch=0)
    assert set(scores) == set(d.TRAINING_DYNAMICS) | set(d.REPRESENTATION)
    np.testing.assert_allclose(scores["el2n"], el2n[0], rtol=1e-6)  # benchmark.detectors.el2n_epoch is the epoch read
    np.testing.assert_allclose(d.record_scores(dirs, labels=labels, neighbours=2, el2n_epoch=2)["el2n"], el2n[2],
                               rtol=1e-6)
    assert not np.allclose(el2n[0], el2n[2])
    np.testing.assert_allclose(scores["aum"], d.over_folds(expected, 6))
    held = folds[0]
    np.testing.assert_allclose(scores["knn_agreement"][held], d.knn_agreement(
        embeddings=features[held].astype(np.float32), labels=labels[held], reference=features[3:].astype(np.float32),
        reference_labels=labels[3:], k=2))


def test_more_neighbours_than_a_folds_training_rows_is_refused_naming_the_key(tmp_path):
    from types import SimpleNamespace

    from labelbench.config import ParamsError
    from labelbench.data.files import write_npy
    from labelbench.evaluation.benchmark import trained_detector_scores

    for k, held in enumerate([np.array([0, 1, 2]), np.array([3, 4, 5])]):
        (tmp_path / "toy" / "net" / f"fold_{k}" / "records").mkdir(parents=True)
        write_npy(tmp_path / "toy" / "net" / f"fold_{k}" / "records" / "train_indices.npy", np.setdiff1d(np.arange(6), held))
    params = SimpleNamespace(benchmark=SimpleNamespace(detectors=SimpleNamespace(neighbours=4, el2n_epoch=0)),
                             crossval=SimpleNamespace(datasets=["toy"], models=["net"], folds=[0, 1]))
    with pytest.raises(ParamsError, match=r"params.yaml: benchmark.detectors.neighbours = 4: more than the 3 training "
                                          r"rows of .*fold_0"):
        trained_detector_scores(params, tmp_path, {})


def test_detector_rows_sit_beside_the_pred_probs_variants_and_are_judged_with_them(published):
    """run_benchmark with a detector's scores for one model: a row beside that model's variants, in the same verdict
    group (a perfect detector is the best alone), while the paper's summary, the wins / ties / losses and the
    variant tables' marks, over the pred_probs variants, stay as without it."""
    from labelbench.data.io import load_dataset
    from labelbench.evaluation.benchmark import run_benchmark, summarize
    from labelbench.evaluation.params import Bootstrap
    from labelbench.evaluation.report import family_section, variant_tables

    data = load_dataset(published, "roman-numeral", models=["resnet18"])
    perfect = 1.0 - data.label_errors.astype(float)
    datasets = {"roman-numeral": (str(published), ["resnet18"])}
    settings = Bootstrap(resamples=50, seed=0, level=0.95)
    table, _ = run_benchmark(datasets, workers=1, bootstrap=settings, ensembles=[],
                             detectors=lambda loaded: {"roman-numeral": {"resnet18": {"aum": perfect}}})
    plain, _ = run_benchmark(datasets, workers=1, bootstrap=settings, ensembles=[])
    row = table[table["method"] == "aum"].iloc[0]
    assert row["model"] == "resnet18" and row["auroc"] == 1.0 and row["auroc_vs_best"] == "best"
    assert set(table[table["method"] != "aum"]["auroc_vs_best"]) <= {"tied", "worse"}
    assert len(table) == len(plain) + 1
    assert summarize(table, lift_k=100) == summarize(plain, lift_k=100)  # the means and the wins / ties / losses
    # within the pred_probs family the verdicts are those of the variants alone, as the variant tables show them
    variants = table[table["method"] != "aum"].reset_index(drop=True)
    for metric in ("auroc", "auprc", "lift_at_100"):
        assert variants[f"{metric}_vs_best_in_family"].tolist() == plain[f"{metric}_vs_best"].tolist()
        assert (variant_tables(table, "roman-numeral", metric) == variant_tables(plain, "roman-numeral", metric)).all(None)
    assert table.loc[table["method"] == "aum", "auroc_vs_best_in_family"].tolist() == ["best"]  # alone in its family
    section = family_section(table, trained=["roman-numeral"])
    assert "### roman-numeral / resnet18" in section and "| training_dynamics | aum" in section
    assert "Training dynamics wins: aum leads the best of the next family, pred_probs" in section
    assert "No dataset is trained here" in family_section(table, trained=[])
    assert "AUROC [90% bootstrap percentile interval]" in family_section(table, trained=["roman-numeral"], level=0.9)
