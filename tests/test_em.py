"""MAP-EM: monotone, convergent, better than majority vote, gold-clamped, and PyMC's MAP."""

import numpy as np
import pandas as pd
import pytest
from _helpers import to_value_point

import crowdbayes as cb
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.em import dirichlet_confusion, em_confusion, vote_shares
from crowdbayes.inference import find_map
from crowdbayes.models import build_class_conditional, build_dawid_skene, build_one_coin

STRUCTURES = ["full", "class_conditional", "one_coin"]
BUILDERS = {
    "full": build_dawid_skene,
    "class_conditional": build_class_conditional,
    "one_coin": build_one_coin,
}


@pytest.fixture(scope="module")
def map_sim() -> cb.Simulation:
    """Small enough for a quick L-BFGS, big enough for a well-defined mode."""
    return cb.simulate_dawid_skene(n_items=150, n_annotators=6, n_categories=3, random_seed=3)


def accuracy(labels: np.ndarray, truth: pd.Series) -> float:
    return float((np.asarray(labels) == truth.to_numpy()).mean())


# --------------------------------------------------------------------------- EM itself
@pytest.mark.parametrize("structure", STRUCTURES)
def test_log_posterior_never_decreases(small_sim: cb.Simulation, structure: str) -> None:
    path = [
        em_confusion(small_sim.data, structure=structure, max_iter=k).log_posterior
        for k in range(1, 31)
    ]
    steps = np.diff(path)
    assert np.all(steps >= -1e-9 * np.abs(path[1:])), steps
    assert steps[0] > 0  # the first step improves on the majority-vote start


@pytest.mark.parametrize("structure", STRUCTURES)
def test_converges(small_sim: cb.Simulation, structure: str) -> None:
    em = em_confusion(small_sim.data, structure=structure)
    assert em.converged
    assert 1 < em.n_iter < 500
    # At the fixed point one more iteration changes nothing.
    again = em_confusion(small_sim.data, structure=structure, max_iter=em.n_iter + 5)
    np.testing.assert_allclose(again.confusion, em.confusion, atol=1e-5)
    assert again.log_posterior == pytest.approx(em.log_posterior, rel=1e-7)
    not_yet = em_confusion(small_sim.data, structure=structure, max_iter=1)
    assert not not_yet.converged and not_yet.n_iter == 1


@pytest.mark.parametrize("structure", STRUCTURES)
def test_result_shapes_and_normalisation(small_sim: cb.Simulation, structure: str) -> None:
    data = small_sim.data
    em = em_confusion(data, structure=structure)
    n_j, n_k = data.n_annotators, data.n_categories
    assert em.prevalence.shape == (n_k,)
    assert em.confusion.shape == (n_j, n_k, n_k)
    assert em.label_posterior.shape == (data.n_items, n_k)
    expected_acc = {"full": (n_j, n_k), "class_conditional": (n_j, n_k), "one_coin": (n_j,)}
    assert em.accuracy.shape == expected_acc[structure]
    np.testing.assert_allclose(em.prevalence.sum(), 1.0)
    np.testing.assert_allclose(em.confusion.sum(axis=-1), 1.0)
    np.testing.assert_allclose(em.label_posterior.sum(axis=1), 1.0)
    diag = np.diagonal(em.confusion, axis1=1, axis2=2)
    if structure == "one_coin":
        np.testing.assert_allclose(diag, np.repeat(em.accuracy[:, None], n_k, axis=1))
    else:
        np.testing.assert_allclose(diag, em.accuracy)
    if structure != "full":
        # Errors are spread evenly over the other categories.
        off = em.confusion[:, ~np.eye(n_k, dtype=bool)].reshape(n_j, n_k, n_k - 1)
        np.testing.assert_allclose(off, off[..., :1].repeat(n_k - 1, axis=-1))


def test_unknown_structure(small_sim: cb.Simulation) -> None:
    with pytest.raises(ValueError, match="unknown structure 'two_coin'"):
        em_confusion(small_sim.data, structure="two_coin")  # type: ignore[arg-type]


@pytest.mark.parametrize("structure", STRUCTURES)
def test_beats_majority_vote(small_sim: cb.Simulation, structure: str) -> None:
    truth = small_sim.true_labels
    mv = cb.MajorityVote().fit(small_sim.annotations, random_seed=0).labels_["label"]
    em = em_confusion(small_sim.data, structure=structure)
    em_acc = accuracy(em.label_posterior.argmax(axis=1), truth)
    mv_acc = accuracy(mv.to_numpy(), truth)
    assert em_acc >= mv_acc
    if structure == "full":  # the simulation's own model, with spammers: strictly better
        assert em_acc > mv_acc + 0.01


def test_recovers_simulated_parameters(small_sim: cb.Simulation) -> None:
    em = em_confusion(small_sim.data)
    # The prevalence of the 300 items drawn (the population value is 2-3 standard errors away).
    drawn = small_sim.true_labels.value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(em.prevalence, drawn, atol=0.03)
    est_acc = np.diagonal(em.confusion, axis1=1, axis2=2) @ small_sim.prevalence
    true_acc = small_sim.annotator_accuracy().to_numpy()
    assert np.corrcoef(est_acc, true_acc)[0, 1] > 0.8


def test_vote_shares_and_gold() -> None:
    frame = pd.DataFrame(
        {"item": [1, 1, 1, 2, 2], "annotator": ["a", "b", "c", "a", "b"], "label": [0, 0, 1, 1, 1]}
    )
    shares = vote_shares(encode_annotations(frame))
    np.testing.assert_allclose(shares, [[2 / 3, 1 / 3], [0.0, 1.0]])
    shares = vote_shares(encode_annotations(frame, gold={2: 0}))
    np.testing.assert_allclose(shares, [[2 / 3, 1 / 3], [1.0, 0.0]])


@pytest.mark.parametrize("structure", STRUCTURES)
def test_gold_items_are_clamped(small_sim: cb.Simulation, structure: str) -> None:
    """Gold items get probability 1 on their gold label, even against a unanimous crowd."""
    frame = small_sim.annotations
    truth = small_sim.true_labels
    # Items where every annotator gave the same label: gold says otherwise for two of them.
    unanimous = frame.groupby("item")["label"].nunique() == 1
    against = unanimous[unanimous].index[:2]
    gold = truth.iloc[:30].copy()
    for item in against:
        given = frame.loc[frame["item"] == item, "label"].iloc[0]
        gold[item] = (given + 1) % 3
    data = encode_annotations(frame, categories=small_sim.categories, gold=gold)
    em = em_confusion(data, structure=structure)
    positions = data.items.get_indexer(gold.index)
    expected = np.zeros((len(gold), data.n_categories))
    expected[np.arange(len(gold)), data.categories.get_indexer(gold.to_numpy())] = 1.0
    np.testing.assert_array_equal(em.label_posterior[positions], expected)
    free = np.setdiff1d(np.arange(data.n_items), positions)
    assert np.all(em.label_posterior[free].max(axis=1) < 1.0)


def test_gold_improves_recovery() -> None:
    """With a crowd of mostly spammers, gold labels pin down who is reliable."""
    sim = cb.simulate_dawid_skene(
        n_items=300, n_annotators=10, spammer_fraction=0.5, mean_accuracy=0.65, random_seed=11
    )
    truth = sim.true_labels
    gold = truth.iloc[:100]
    data = encode_annotations(sim.annotations, categories=sim.categories, gold=gold)
    without = em_confusion(sim.data)
    with_gold = em_confusion(data)
    rest = np.arange(100, sim.data.n_items)
    true_acc = sim.annotator_accuracy().to_numpy()

    def error(em: object) -> float:
        est = np.diagonal(em.confusion, axis1=1, axis2=2) @ sim.prevalence  # type: ignore[attr-defined]
        return float(np.abs(est - true_acc).mean())

    assert error(with_gold) < error(without)
    assert accuracy(with_gold.label_posterior.argmax(1)[rest], truth.iloc[100:]) >= accuracy(
        without.label_posterior.argmax(1)[rest], truth.iloc[100:]
    )


# --------------------------------------------------------------------------- EM == PyMC
def em_values(em: object, structure: str) -> dict[str, np.ndarray]:
    values = {"prevalence": em.prevalence}  # type: ignore[attr-defined]
    key = "confusion" if structure == "full" else "accuracy"
    values[key] = getattr(em, key)
    return values


@pytest.mark.parametrize("structure", STRUCTURES)
def test_em_objective_is_the_model_log_density(map_sim: cb.Simulation, structure: str) -> None:
    """EM's log posterior differs from the PyMC model's (no Jacobian) by a constant only."""
    data = map_sim.data
    model = BUILDERS[structure](data)
    logp = model.compile_logp(jacobian=False, mode="FAST_COMPILE")
    gaps = []
    for k in (1, 2, 5, 50):
        em = em_confusion(data, structure=structure, max_iter=k)
        gaps.append(em.log_posterior - float(logp(to_value_point(model, em_values(em, structure)))))
    np.testing.assert_allclose(gaps, gaps[0], rtol=0, atol=1e-8)


def prior_mean_start(structure: str, data: AnnotationData) -> dict[str, np.ndarray]:
    n_j, n_k = data.n_annotators, data.n_categories
    start = {"prevalence": np.full(n_k, 1.0 / n_k)}
    if structure == "full":
        beta = np.broadcast_to(dirichlet_confusion(8.0, 0.6, n_k), (n_j, n_k, n_k))
        start["confusion"] = beta / beta.sum(axis=-1, keepdims=True)
    else:
        shape = (n_j, n_k) if structure == "class_conditional" else (n_j,)
        start["accuracy"] = np.full(shape, 4.8 / 8.0)
    return start


@pytest.mark.parametrize("structure", STRUCTURES)
def test_em_fixed_point_is_pymc_map(map_sim: cb.Simulation, structure: str) -> None:
    data = map_sim.data
    em = em_confusion(data, structure=structure)
    start = prior_mean_start(structure, data)
    key = "confusion" if structure == "full" else "accuracy"
    # The start really is elsewhere.
    assert np.abs(start[key] - getattr(em, key)).max() > 0.05
    mode = find_map(BUILDERS[structure](data), start=start)
    np.testing.assert_allclose(
        mode["prevalence"].squeeze(("chain", "draw")).to_numpy(), em.prevalence, atol=1e-3
    )
    np.testing.assert_allclose(
        mode["confusion"].squeeze(("chain", "draw")).to_numpy(), em.confusion, atol=1e-3
    )
    if structure != "full":
        np.testing.assert_allclose(
            mode["accuracy"].squeeze(("chain", "draw")).to_numpy(), em.accuracy, atol=1e-3
        )
