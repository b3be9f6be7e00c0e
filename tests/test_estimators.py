"""Estimators: scikit-learn conventions, crowd-kit API, MAP accuracy, label switching,
diagnostics, and one shared small NUTS fit checked end to end."""

import functools
import importlib.util
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from _helpers import mv_accuracy

import crowdbayes as cb
from crowdbayes.diagnostics import (
    RHAT_THRESHOLD,
    SamplingWarning,
    chain_permutations,
    compute_diagnostics,
    fix_label_switching,
)
from crowdbayes.em import em_confusion
from crowdbayes.estimators import BayesianCrowdModel, NotFittedError
from crowdbayes.fast.draws import label_posterior_draws
from crowdbayes.simulate import simulate_annotations

BAYESIAN = [cb.DawidSkene, cb.ClassConditional, cb.OneCoin, cb.HierarchicalDawidSkene]
ALL = [cb.MajorityVote, *BAYESIAN]
FITTED_ATTRIBUTES = [
    "datatree_",
    "labels_",
    "label_probs_",
    "annotators_",
    "prevalence_",
    "confusion_",
    "diagnostics_",
]

# --------------------------------------------------------------------------- the shared NUTS fit
CATEGORY_NAMES = {0: "cat", 1: "dog", 2: "emu"}
NUTS_SETTINGS: dict[str, Any] = {
    "draws": 200,
    "tune": 200,
    "chains": 2,
    "sampler": "nutpie",
    "random_seed": 1,
    "progressbar": False,
}


@functools.cache
def nuts_simulation() -> cb.Simulation:
    """150 items, 8 annotators, 3 categories, parameters drawn from the default priors.

    Drawn from the priors so that 94 % intervals are calibrated even with this little data
    (``test_recovery.py`` checks coverage on this fit).
    """
    rng = np.random.default_rng(21)
    priors = cb.DawidSkenePriors()
    prevalence = rng.dirichlet(priors.prevalence_concentration(3))
    concentration = priors.confusion_concentration(8, 3)
    confusion = np.array([[rng.dirichlet(row) for row in ann] for ann in concentration])
    return simulate_annotations(
        prevalence, confusion, n_items=150, labels_per_item=5, random_seed=rng
    )


@functools.cache
def nuts_fit() -> tuple[cb.DawidSkene, pd.DataFrame, "pd.Series[Any]", list[Any]]:
    """One small Dawid-Skene NUTS fit per test session, on data with the user's own ids.

    Returns the fitted estimator, the annotations, the true labels and the warnings the fit
    emitted (recorded, so that ``filterwarnings = error`` does not turn them into failures).
    Also used by ``test_results.py`` and ``test_recovery.py``.
    """
    sim = nuts_simulation()
    frame = pd.DataFrame(
        {
            "item": "q" + sim.annotations["item"].astype(str),
            "annotator": "w-" + sim.annotations["annotator"],
            "label": sim.annotations["label"].map(CATEGORY_NAMES),
        }
    )
    truth = pd.Series(
        sim.true_labels.map(CATEGORY_NAMES).to_numpy(),
        index=pd.Index("q" + sim.true_labels.index.astype(str), name="item"),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = cb.DawidSkene().fit(frame, **NUTS_SETTINGS)
    return model, frame, truth, list(caught)


@pytest.fixture(scope="session")
def nuts() -> tuple[cb.DawidSkene, pd.DataFrame, "pd.Series[Any]", list[Any]]:
    return nuts_fit()


# --------------------------------------------------------------------------- conventions
@pytest.mark.parametrize("cls", ALL)
def test_not_fitted_error(cls: type) -> None:
    model = cls()
    fitted = ["result_", *FITTED_ATTRIBUTES]
    if issubclass(cls, BayesianCrowdModel):
        fitted.append("model_")
    for name in fitted:
        with pytest.raises(NotFittedError, match=r"not fitted yet; call \.fit"):
            getattr(model, name)
        assert not hasattr(model, name)
    # An unknown attribute ending in ``_`` is a plain AttributeError, not NotFittedError.
    with pytest.raises(AttributeError) as caught:
        model.no_such_attribute_  # noqa: B018
    assert not isinstance(caught.value, NotFittedError)
    assert issubclass(NotFittedError, ValueError)
    assert issubclass(NotFittedError, AttributeError)


@pytest.mark.parametrize("cls", ALL)
def test_fit_returns_self(cls: type, small_sim: cb.Simulation) -> None:
    model = cls()
    assert model.fit(small_sim.annotations, method="map", random_seed=0) is model
    fitted = ["result_", *FITTED_ATTRIBUTES]
    if issubclass(cls, BayesianCrowdModel):
        fitted.append("model_")
    for name in fitted:
        if cls is cb.MajorityVote and name == "confusion_":
            with pytest.raises(ValueError, match="'majority-vote' has no confusion matrices"):
                getattr(model, name)
        else:
            getattr(model, name)


class _StopBeforeSampling(Exception):
    pass


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (cb.DawidSkene, (500, 0.65)),
        (cb.ClassConditional, (500, 0.8)),
        (cb.OneCoin, (500, 0.65)),
        (cb.HierarchicalDawidSkene, (1000, 0.8)),
        (cb.Mace, (1000, 0.8)),
        (cb.Glad, (1000, 0.8)),
        (cb.ItemDifficulty, (1000, 0.8)),
        (cb.LogisticRandomEffects, (1000, 0.8)),
    ],
)
def test_default_tuning_steps_and_target_accept_by_model(
    cls: type,
    expected: tuple[int, float],
    small_sim: cb.Simulation,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """500 tuning steps for the models without hierarchical scales, target acceptance 0.65 for
    Dawid-Skene and one-coin (benchmarks/TUNING.md, SBC.md), 1000 and 0.8 for the others;
    explicit values win."""
    seen: dict[str, Any] = {}

    def stop(model: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise _StopBeforeSampling

    monkeypatch.setattr("crowdbayes.estimators.sample_posterior", stop)
    with pytest.raises(_StopBeforeSampling):
        cls().fit(small_sim.annotations, random_seed=0)
    assert (seen["tune"], seen["target_accept"]) == expected
    assert expected == (cls.default_tune, cls.default_target_accept)
    with pytest.raises(_StopBeforeSampling):
        cls().fit(small_sim.annotations, random_seed=0, tune=123, target_accept=0.9)
    assert (seen["tune"], seen["target_accept"]) == (123, 0.9)


@pytest.mark.parametrize("cls", BAYESIAN)
def test_priors_are_stored_unmodified(cls: type, small_sim: cb.Simulation) -> None:
    priors_cls = cls.priors_class
    priors = {"prevalence": 2.0}
    model = cls(priors=priors)
    assert model.get_params() == {"priors": priors}
    assert model.get_params()["priors"] is priors
    model.fit(small_sim.annotations, method="map", random_seed=0)
    assert model.priors is priors
    assert priors == {"prevalence": 2.0}
    obj = priors_cls(prevalence=2.0)
    assert cls(priors=obj).get_params()["priors"] is obj
    assert cls().get_params() == {"priors": None}
    assert repr(cls(priors=priors)) == f"{cls.__name__}(priors={{'prevalence': 2.0}})"


def test_priors_as_dict_are_used(small_sim: cb.Simulation) -> None:
    import json

    as_dict = cb.DawidSkene(priors={"prior_accuracy": 0.9, "pseudo_count": 50.0})
    as_obj = cb.DawidSkene(priors=cb.DawidSkenePriors(prior_accuracy=0.9, pseudo_count=50.0))
    default = cb.DawidSkene()
    for model in (as_dict, as_obj, default):
        model.fit(small_sim.annotations, method="map", random_seed=0)
    pd.testing.assert_frame_equal(as_dict.confusion_, as_obj.confusion_)
    assert not as_dict.confusion_["mean"].equals(default.confusion_["mean"])
    recorded = json.loads(as_dict.datatree_.attrs["priors"])
    assert recorded["prior_accuracy"] == 0.9 and recorded["pseudo_count"] == 50.0


@pytest.mark.parametrize(
    ("priors", "named"),
    [
        ("strong", r"priors for dawid-skene must be a DawidSkenePriors or a dict .*not str"),
        (
            cb.OneCoinPriors(),
            "must be a DawidSkenePriors or a dict of its fields, not OneCoinPriors",
        ),
        ([1.0, 2.0], "not list"),
        ({"bogus": 1.0}, "bogus"),
        ({"prior_accuracy": 1.5}, r"prior 'prior_accuracy' must lie strictly between 0 and 1"),
    ],
)
def test_wrong_priors_raise_value_error(priors: Any, named: str, small_sim: cb.Simulation) -> None:
    with pytest.raises(ValueError, match=named):
        cb.DawidSkene(priors=priors).fit(small_sim.annotations, method="map")


def test_method_must_be_nuts_map_or_vi(small_sim: cb.Simulation) -> None:
    with pytest.raises(ValueError, match=r"method must be 'nuts', 'map' or 'vi', not 'advi'"):
        cb.DawidSkene().fit(small_sim.annotations, method="advi")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- variational
@functools.cache
def vi_fit() -> cb.DawidSkene:
    _, frame, _, _ = nuts_fit()
    return cb.DawidSkene().fit(frame, method="vi", draws=2000, random_seed=3)


def test_vi_matches_nuts_labels_and_annotators(
    nuts: tuple[cb.DawidSkene, pd.DataFrame, "pd.Series[Any]", list[Any]],
) -> None:
    """ADVI from the EM mode: the labels and annotator means of NUTS, intervals of its size."""
    model, _, truth, _ = nuts
    vi = vi_fit()
    attrs = vi.result_.datatree.attrs
    assert attrs["method"] == "vi" and attrs["vi_iterations"] == 10_000
    assert attrs["vi_converged"] == 1 and vi.diagnostics_.ok
    assert vi.datatree_.posterior.sizes["draw"] == 2000
    p_vi, p_nuts = vi.label_probs_.to_numpy(), model.label_probs_.to_numpy()
    assert np.abs(p_vi - p_nuts).mean() < 0.02
    # the labels agree on every item NUTS does not call a near-tie (its two most probable
    # categories within 0.1 of each other); a near-tie's mode is decided by Monte Carlo noise
    top_two = np.sort(p_nuts, axis=1)[:, -2:]
    clear = (top_two[:, 1] - top_two[:, 0]) > 0.1
    assert clear.mean() > 0.9
    agree = (vi.labels_["label"] == model.labels_["label"]).to_numpy()
    assert agree[clear].all()
    a_vi, a_nuts = vi.annotators_, model.annotators_
    assert np.abs(a_vi["accuracy"] - a_nuts["accuracy"]).max() < 0.03
    ratio = (a_vi["accuracy_high"] - a_vi["accuracy_low"]) / (
        a_nuts["accuracy_high"] - a_nuts["accuracy_low"]
    )
    assert 0.6 < ratio.median() < 1.4, ratio.describe()


def test_vi_iterations_are_passed_and_default_by_size(small_sim: cb.Simulation) -> None:
    fit = cb.DawidSkene().fit(
        small_sim.annotations, method="vi", vi_iterations=400, draws=50, random_seed=1
    )
    assert fit.result_.datatree.attrs["vi_iterations"] == 400
    from crowdbayes.inference import default_vi_iterations

    sizes = [10, 100_000, 100_001, 250_000, 10**6, 10**8]
    assert [default_vi_iterations(n) for n in sizes] == [
        10_000,
        10_000,
        10_000,
        4_000,
        1_000,
        1_000,
    ]


def test_vi_fit_cannot_enter_loo() -> None:
    with pytest.raises(ValueError, match="method='vi'"):
        cb.compare({"a": vi_fit(), "b": vi_fit()})


@pytest.mark.skipif(importlib.util.find_spec("numpyro") is None, reason="jax extra not installed")
def test_numpyro_sampler_runs_the_fused_likelihood(small_sim: cb.Simulation) -> None:
    """The JAX path compiles the fused Op (its JAX implementation) and recovers the labels.

    Short chains may report R-hat above 1.01 (a SamplingWarning); that is not what is tested.
    """
    from crowdbayes.diagnostics import SamplingWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        fit = cb.DawidSkene().fit(
            small_sim.annotations, sampler="numpyro", draws=200, tune=200, chains=2, random_seed=1
        )
    truth = small_sim.true_labels.reindex(fit.labels_.index)
    assert (fit.labels_["label"] == truth).mean() > 0.85
    assert fit.datatree_.posterior.sizes["draw"] == 200


def test_unknown_sampler_names_the_choices(small_sim: cb.Simulation) -> None:
    with pytest.raises(
        ValueError, match=r"unknown sampler 'stan'; choose one of nutpie, pymc, numpyro, blackjax"
    ):
        cb.DawidSkene().fit(small_sim.annotations, sampler="stan")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"draws": 0}, "draws must be a positive integer"),
        ({"chains": 1.5}, "chains must be a positive integer"),
        ({"random_seed": "seed"}, "random_seed must be an int"),
        ({"random_seed": -3}, "random_seed must be non-negative"),
        ({"target_accept": 1.2}, r"target_accept must lie in \(0, 1\)"),
    ],
)
def test_bad_sampler_settings(kwargs: dict[str, Any], named: str, small_sim: cb.Simulation) -> None:
    with pytest.raises(ValueError, match=named):
        cb.DawidSkene().fit(small_sim.annotations, sampler="pymc", **kwargs)


def test_encoded_data_with_gold_is_rejected(small_sim: cb.Simulation) -> None:
    with pytest.raises(ValueError, match="pass them to encode_annotations"):
        cb.DawidSkene().fit(small_sim.data, gold={0: 1}, method="map")


def test_registry() -> None:
    assert list(cb.MODELS) == [
        "majority-vote",
        "dawid-skene",
        "class-conditional",
        "one-coin",
        "hierarchical-dawid-skene",
        "item-difficulty",
        "logistic-random-effects",
        "mace",
        "glad",
    ]
    for name, cls in cb.MODELS.items():
        assert cls.name == name
        assert type(cb.get_model(name)) is cls
    with pytest.raises(ValueError, match="unknown model 'stan'; choose one of majority-vote"):
        cb.get_model("stan")


# --------------------------------------------------------------------------- crowd-kit API
@pytest.mark.parametrize("cls", ALL)
def test_crowdkit_shortcuts(cls: type, small_sim: cb.Simulation) -> None:
    crowdkit = small_sim.annotations.rename(columns={"item": "task", "annotator": "worker"})
    labels = cls().fit_predict(crowdkit, method="map", random_seed=0)
    assert isinstance(labels, pd.Series)
    assert labels.name == "agg_label"
    assert labels.index.name == "task"
    assert labels.index.tolist() == sorted(crowdkit["task"].unique())
    probs = cls().fit_predict_proba(crowdkit, method="map", random_seed=0)
    assert probs.index.name == "task"
    assert probs.columns.tolist() == [0, 1, 2]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # The predicted label is a most probable one.
    picked = probs.to_numpy()[np.arange(len(probs)), labels.to_numpy()]
    np.testing.assert_allclose(picked, probs.max(axis=1))
    # Default names give an index named "item".
    assert cls().fit_predict(small_sim.annotations, method="map", random_seed=0).index.name == (
        "item"
    )


def tie_frame() -> pd.DataFrame:
    """Forty items with a 1-1 vote each (ties), plus two clear items."""
    rows = []
    for i in range(40):
        rows += [(i, "a", 0), (i, "b", 1)]
    rows += [(40, "a", 1), (40, "b", 1), (41, "a", 0), (41, "b", 0)]
    return pd.DataFrame(rows, columns=["item", "annotator", "label"])


def test_majority_vote_tie_break_is_seeded() -> None:
    frame = tie_frame()
    first = cb.MajorityVote().fit_predict(frame, random_seed=5)
    again = cb.MajorityVote().fit_predict(frame, random_seed=5)
    other = cb.MajorityVote().fit_predict(frame, random_seed=6)
    pd.testing.assert_series_equal(first, again)
    assert not first.iloc[:40].equals(other.iloc[:40])
    # Both labels are chosen among the ties: a coin, not a rule.
    assert 5 < first.iloc[:40].sum() < 35
    assert first.loc[40] == 1 and first.loc[41] == 0
    gen = cb.MajorityVote().fit_predict(frame, random_seed=np.random.default_rng(5))
    assert set(gen.unique()) == {0, 1}
    probs = cb.MajorityVote().fit(frame, random_seed=5).label_probs_
    np.testing.assert_allclose(probs.iloc[:40].to_numpy(), 0.5)


def test_majority_vote_seed_is_recorded() -> None:
    mv = cb.MajorityVote().fit(tie_frame(), random_seed=5)
    assert int(mv.datatree_.attrs["random_seed"]) == 5
    # An unseeded fit records the seed it drew, which reproduces it.
    unseeded = cb.MajorityVote().fit(tie_frame())
    seed = int(unseeded.datatree_.attrs["random_seed"])
    again = cb.MajorityVote().fit(tie_frame(), random_seed=seed)
    pd.testing.assert_frame_equal(unseeded.labels_, again.labels_)


# --------------------------------------------------------------------------- MAP quality
@pytest.mark.parametrize("cls", BAYESIAN)
def test_map_beats_or_matches_majority_vote(cls: type, small_sim: cb.Simulation) -> None:
    truth = small_sim.true_labels
    fit = cls().fit(small_sim.annotations, method="map", random_seed=0)
    acc = float((fit.labels_["label"] == truth).mean())
    assert acc >= mv_accuracy(small_sim.annotations, truth)
    assert fit.diagnostics_.n_draws == 1
    assert fit.diagnostics_.ok
    assert fit.prevalence_[["low", "high"]].isna().all().all()
    assert "sample_stats" not in fit.datatree_.children
    assert "log_likelihood" not in fit.datatree_.children


def test_hierarchical_map_on_its_own_simulation() -> None:
    sim = cb.simulate_hierarchical_dawid_skene(n_items=200, n_annotators=10, random_seed=4)
    fit = cb.HierarchicalDawidSkene().fit(sim.annotations, method="map", random_seed=0)
    acc = float((fit.labels_["label"] == sim.true_labels).mean())
    assert acc >= mv_accuracy(sim.annotations, sim.true_labels)


@pytest.mark.parametrize(
    ("cls", "structure"),
    [(cb.DawidSkene, "full"), (cb.ClassConditional, "class_conditional"), (cb.OneCoin, "one_coin")],
)
def test_map_is_the_em_mode(cls: type, structure: str, small_sim: cb.Simulation) -> None:
    em = em_confusion(small_sim.data, structure=structure)
    fit = cls().fit(small_sim.annotations, method="map", random_seed=0)
    np.testing.assert_allclose(fit.prevalence_["mean"].to_numpy(), em.prevalence)
    np.testing.assert_allclose(fit.label_probs_.to_numpy(), em.label_posterior, atol=1e-12)


# --------------------------------------------------------------------------- label switching
def fake_posterior(
    prevalence: np.ndarray,
    confusion: np.ndarray,
    data: cb.AnnotationData,
    *,
    chain_perms: list[np.ndarray],
    n_draws: int = 50,
    seed: int = 0,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Draws around given parameters; chain c's latent category k is true category perm[k]."""
    rng = np.random.default_rng(seed)
    prevs, confs = [], []
    for perm in chain_perms:
        p = rng.dirichlet(500 * prevalence[perm], size=n_draws)
        c = np.stack(
            [
                np.stack(
                    [
                        rng.dirichlet(500 * confusion[j, perm[k]], size=n_draws)
                        for k in range(len(perm))
                    ]
                )
                for j in range(confusion.shape[0])
            ]
        )  # (annotator, latent, draw, category) in latent order
        prevs.append(p)
        confs.append(np.moveaxis(c, 2, 0))
    coords = {
        "chain": np.arange(len(chain_perms)),
        "draw": np.arange(n_draws),
        "category": data.categories.to_numpy(),
        "true_category": data.categories.to_numpy(),
        "annotator": data.annotators.to_numpy(),
    }
    posterior = xr.Dataset(
        {
            "prevalence": (("chain", "draw", "category"), np.stack(prevs)),
            "confusion": (
                ("chain", "draw", "annotator", "true_category", "category"),
                np.stack(confs),
            ),
            # The class-conditional model's free variable, consistent with the confusion draws.
            "accuracy": (
                ("chain", "draw", "annotator", "true_category"),
                np.diagonal(np.stack(confs), axis1=3, axis2=4),
            ),
        },
        coords=coords,
    )
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros((len(chain_perms), n_draws), dtype=bool))},
        coords={"chain": coords["chain"], "draw": coords["draw"]},
    )
    return posterior, stats


def fake_fixture(small_sim: cb.Simulation) -> tuple[np.ndarray, np.ndarray, cb.AnnotationData]:
    em = em_confusion(small_sim.data)
    return em.prevalence, em.confusion, small_sim.data


CYCLE = np.array([1, 2, 0])  # a 3-cycle: catches a permutation applied the wrong way round
IDENTITY = np.arange(3)


def test_fake_posterior_is_permuted_as_intended(small_sim: cb.Simulation) -> None:
    prevalence, confusion, data = fake_fixture(small_sim)
    post, _ = fake_posterior(prevalence, confusion, data, chain_perms=[IDENTITY, CYCLE])
    mean = post.mean("draw")
    np.testing.assert_allclose(mean["prevalence"][0], prevalence, atol=0.02)
    np.testing.assert_allclose(mean["prevalence"][1], prevalence[CYCLE], atol=0.02)
    np.testing.assert_allclose(mean["confusion"][1], confusion[:, CYCLE, :], atol=0.03)


def test_chain_permutations_detects_a_permuted_chain(small_sim: cb.Simulation) -> None:
    prevalence, confusion, data = fake_fixture(small_sim)
    post, _ = fake_posterior(
        prevalence, confusion, data, chain_perms=[IDENTITY, CYCLE, IDENTITY, CYCLE[::-1]]
    )
    conf = post["confusion"].transpose("chain", "draw", ...).to_numpy()
    perms = chain_permutations(conf, weights=np.bincount(data.annotator_index))
    assert perms.shape == (4, 3)
    np.testing.assert_array_equal(perms[0], IDENTITY)
    np.testing.assert_array_equal(perms[2], IDENTITY)
    # Relabelling row l with perms[c, l] restores the truth.
    for c in (1, 3):
        assert not np.array_equal(perms[c], IDENTITY)
        relabelled = conf[c].mean(axis=0)[:, perms[c], :]
        np.testing.assert_allclose(relabelled, confusion, atol=0.03)


def test_dawid_skene_relabels_a_permuted_chain(small_sim: cb.Simulation) -> None:
    prevalence, confusion, data = fake_fixture(small_sim)
    post, stats = fake_posterior(prevalence, confusion, data, chain_perms=[IDENTITY, CYCLE])
    assert cb.DawidSkene.relabel_exact
    new_post, new_stats, permuted, relabelled = fix_label_switching(
        post, stats, data, exact=cb.DawidSkene.relabel_exact
    )
    assert permuted == [1] and relabelled
    assert new_post.sizes["chain"] == 2
    xr.testing.assert_identical(new_post.isel(chain=0), post.isel(chain=0))
    mean = new_post.isel(chain=1).mean("draw")
    np.testing.assert_allclose(mean["prevalence"], prevalence, atol=0.02)
    np.testing.assert_allclose(mean["confusion"], confusion, atol=0.03)
    # The relabelled chain is the same draws, reordered (nothing invented).
    np.testing.assert_array_equal(
        new_post["prevalence"].isel(chain=1).to_numpy(),
        post["prevalence"].isel(chain=1).to_numpy()[:, CYCLE.argsort()],
    )
    xr.testing.assert_identical(new_stats, stats)


def test_identity_chains_are_left_alone(small_sim: cb.Simulation) -> None:
    prevalence, confusion, data = fake_fixture(small_sim)
    post, stats = fake_posterior(prevalence, confusion, data, chain_perms=[IDENTITY, IDENTITY])
    out = fix_label_switching(post, stats, data, exact=cb.DawidSkene.relabel_exact)
    assert out[2] == [] and out[3]
    xr.testing.assert_identical(out[0], post)


def test_non_exact_model_drops_a_permuted_chain(small_sim: cb.Simulation) -> None:
    prevalence, confusion, data = fake_fixture(small_sim)
    post, stats = fake_posterior(
        prevalence, confusion, data, chain_perms=[IDENTITY, CYCLE, IDENTITY]
    )
    for cls in (cb.ClassConditional, cb.OneCoin, cb.HierarchicalDawidSkene):
        assert not cls.relabel_exact
        new_post, new_stats, permuted, relabelled = fix_label_switching(
            post, stats, data, exact=cls.relabel_exact
        )
        assert permuted == [1] and not relabelled
        assert new_post["chain"].to_numpy().tolist() == [0, 2]
        assert new_stats["chain"].to_numpy().tolist() == [0, 2]
        xr.testing.assert_identical(new_post, post.isel(chain=[0, 2]))


def test_every_chain_permuted_in_a_non_exact_model_is_reported_truthfully(
    small_sim: cb.Simulation,
) -> None:
    """Nothing can be dropped or relabelled; the report must not claim either was done."""
    prevalence, confusion, data = fake_fixture(small_sim)
    post, stats = fake_posterior(prevalence, confusion, data, chain_perms=[CYCLE, CYCLE])
    new_post, _, permuted, relabelled = fix_label_switching(
        post, stats, data, exact=cb.ClassConditional.relabel_exact
    )
    assert permuted == [0, 1]
    xr.testing.assert_identical(new_post, post)
    diag = compute_diagnostics(
        new_post, stats, ["prevalence"], permuted_chains=permuted, relabelled=relabelled
    )
    (message,) = [m for m in diag.messages if "permuted" in m]
    assert "were relabelled" not in message and "were dropped" not in message, message


def patch_sampler(
    monkeypatch: pytest.MonkeyPatch, posterior: xr.Dataset, stats: xr.Dataset
) -> list[dict[str, Any]]:
    """Make the estimator's NUTS call return the given draws (no compilation)."""
    calls: list[dict[str, Any]] = []

    def fake(model: Any, **kwargs: Any) -> xr.DataTree:
        calls.append(kwargs)
        tree = xr.DataTree()
        tree["posterior"] = xr.DataTree(posterior)
        tree["sample_stats"] = xr.DataTree(stats)
        return tree

    monkeypatch.setattr("crowdbayes.estimators.sample_posterior", fake)
    return calls


def test_fit_relabels_and_warns(monkeypatch: pytest.MonkeyPatch, small_sim: cb.Simulation) -> None:
    prevalence, confusion, data = fake_fixture(small_sim)
    post, stats = fake_posterior(prevalence, confusion, data, chain_perms=[IDENTITY, CYCLE])
    calls = patch_sampler(monkeypatch, post, stats)
    with pytest.warns(SamplingWarning) as record:
        fit = cb.DawidSkene().fit(small_sim.annotations, draws=50, chains=2, random_seed=3)
    messages = [str(w.message) for w in record]
    assert any(
        m.startswith("dawid-skene: chain(s) [1] settled in a label-permuted mode")
        and "relabelled" in m
        for m in messages
    ), messages
    assert calls[0]["random_seed"] == 3 and calls[0]["draws"] == 50
    assert fit.diagnostics_.permuted_chains == [1]
    np.testing.assert_allclose(fit.prevalence_["mean"], prevalence, atol=0.02)
    em_labels = data.categories.to_numpy()[em_confusion(data).label_posterior.argmax(1)]
    assert (fit.labels_["label"].to_numpy() == em_labels).mean() > 0.97


# --------------------------------------------------------------------------- diagnostics
def test_diagnostics_flag_disagreeing_chains() -> None:
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(4, 500))
    draws[1] += 1.0  # one chain elsewhere
    post = xr.Dataset({"x": (("chain", "draw"), draws)})
    diag = compute_diagnostics(post, None, ["x"])
    assert diag.max_rhat > RHAT_THRESHOLD
    assert diag.worst_parameter == "x"
    assert any("R-hat up to" in m and "exceeds 1.01" in m for m in diag.messages)
    assert not diag.ok


def test_diagnostics_count_divergences() -> None:
    rng = np.random.default_rng(1)
    post = xr.Dataset({"x": (("chain", "draw"), rng.normal(size=(2, 500)))})
    diverging = np.zeros((2, 500), dtype=bool)
    diverging[0, [3, 9]] = True
    diverging[1, 400] = True
    stats = xr.Dataset({"diverging": (("chain", "draw"), diverging)})
    diag = compute_diagnostics(post, stats, ["x"])
    assert diag.n_divergent == 3
    assert any(m.startswith("3 divergent transition(s)") for m in diag.messages)


def test_diagnostics_flag_low_ess() -> None:
    rng = np.random.default_rng(2)
    x = np.zeros((2, 500))
    for t in range(1, 500):  # AR(1) with phi = 0.99: ESS of a few dozen
        x[:, t] = 0.99 * x[:, t - 1] + rng.normal(size=2)
    post = xr.Dataset({"x": (("chain", "draw"), x)})
    diag = compute_diagnostics(post, None, ["x"])
    assert diag.min_ess_bulk < 200
    assert any("effective sample size is low" in m for m in diag.messages)


def test_diagnostics_single_chain_and_constants() -> None:
    rng = np.random.default_rng(3)
    post = xr.Dataset(
        {
            "x": (("chain", "draw"), rng.normal(size=(1, 1000))),
            "fixed": (("chain", "draw", "k"), np.zeros((1, 1000, 2))),
        }
    )
    diag = compute_diagnostics(post, None, ["x", "fixed"])
    assert math.isnan(diag.max_rhat)
    assert any("only one chain" in m for m in diag.messages)
    good = xr.Dataset({"x": (("chain", "draw"), rng.normal(size=(4, 1000)))})
    assert compute_diagnostics(good, None, ["x"]).ok


def test_diagnostics_name_the_worst_parameter() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=(2, 500, 2, 3))
    values[1, :, 1, 2] += 2.0
    post = xr.Dataset(
        {"conf": (("chain", "draw", "annotator", "category"), values)},
        coords={"annotator": ["ann1", "ann2"], "category": ["x", "y", "z"]},
    )
    diag = compute_diagnostics(post, None, ["conf"])
    assert diag.worst_parameter == "conf[ann2, z]"
    assert cb.Diagnostics.from_dict(diag.to_dict()) == diag


def test_bad_rhat_in_a_fit_warns(monkeypatch: pytest.MonkeyPatch, small_sim: cb.Simulation) -> None:
    prevalence, confusion, data = fake_fixture(small_sim)
    post, stats = fake_posterior(prevalence, confusion, data, chain_perms=[IDENTITY, IDENTITY])
    shifted = post.copy()
    conf = shifted["confusion"].to_numpy().copy()
    conf[1] = 0.7 * conf[1] + 0.3 / 3  # chain 1 sits elsewhere (still a simplex)
    shifted["confusion"] = (post["confusion"].dims, conf)
    div = stats["diverging"].to_numpy().copy()
    div[0, :2] = True
    stats = stats.assign(diverging=(("chain", "draw"), div))
    patch_sampler(monkeypatch, shifted, stats)
    with pytest.warns(SamplingWarning) as record:
        fit = cb.DawidSkene().fit(small_sim.annotations, random_seed=0)
    messages = [str(w.message) for w in record]
    assert any(m.startswith("dawid-skene: R-hat up to") for m in messages)
    assert any(m.startswith("dawid-skene: 2 divergent transition(s)") for m in messages)
    assert fit.diagnostics_.max_rhat > RHAT_THRESHOLD
    assert fit.diagnostics_.n_divergent == 2


# --------------------------------------------------------------------------- the NUTS fit
def test_nuts_groups(nuts: tuple) -> None:
    model, *_ = nuts
    dt = model.datatree_
    assert set(dt.children) == {
        "posterior",
        "sample_stats",
        "observed_data",
        "constant_data",
        "log_likelihood",
        "summary",
    }
    assert set(dt.posterior.data_vars) >= {"prevalence", "confusion", "annotator_accuracy"}
    assert "diverging" in dt.sample_stats.data_vars
    assert dt.posterior.sizes["chain"] == 2 and dt.posterior.sizes["draw"] == 200


def test_nuts_dims_and_user_coords(nuts: tuple) -> None:
    model, frame, truth, _ = nuts
    dt = model.datatree_
    items = sorted(frame["item"].unique())
    annotators = sorted(frame["annotator"].unique())
    categories = ["cat", "dog", "emu"]
    assert dt.posterior["prevalence"].dims == ("chain", "draw", "category")
    assert dt.posterior["confusion"].dims == (
        "chain",
        "draw",
        "annotator",
        "true_category",
        "category",
    )
    assert dt.posterior["annotator_accuracy"].dims == ("chain", "draw", "annotator")
    assert dt.log_likelihood["labels"].dims == ("chain", "draw", "item")
    assert dt.summary["label_probability"].dims == ("item", "category")
    for node in (dt.posterior, dt.summary):
        assert node["annotator"].to_numpy().tolist() == annotators
        assert node["category"].to_numpy().tolist() == categories
        assert node["true_category"].to_numpy().tolist() == categories
    assert dt.summary["item"].to_numpy().tolist() == items
    assert dt.log_likelihood["item"].to_numpy().tolist() == items
    assert model.labels_.index.tolist() == items
    assert model.annotators_.index.tolist() == annotators
    assert model.prevalence_.index.tolist() == categories
    assert set(model.labels_["label"]) <= set(categories)


def test_nuts_label_probabilities(nuts: tuple) -> None:
    model, frame, truth, _ = nuts
    probs = model.label_probs_
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert ((probs >= 0) & (probs <= 1)).all().all()
    labels = model.labels_
    assert (labels["label"] == probs.idxmax(axis=1)).all()
    np.testing.assert_allclose(labels["probability"], probs.max(axis=1))
    plogp = (probs * np.log(probs.where(probs > 0, 1.0))).sum(axis=1)
    np.testing.assert_allclose(labels["entropy"], -plogp, atol=1e-12)
    # Better than majority vote on its own data.
    acc = float((labels["label"] == truth.reindex(labels.index)).mean())
    assert acc >= mv_accuracy(frame, truth)


def test_nuts_probabilities_and_log_likelihood_are_the_draws_average(nuts: tuple) -> None:
    """Recompute from the stored draws with the draw kernel of :mod:`crowdbayes.fast.draws`."""
    model, *_ = nuts
    dt, data = model.datatree_, model.result_.data
    prev = dt.posterior["prevalence"].transpose("chain", "draw", "category").to_numpy()
    conf = dt.posterior["confusion"].transpose("chain", "draw", ...).to_numpy()
    n = prev.shape[0] * prev.shape[1]
    probs, item_ll = label_posterior_draws(
        np.log(prev.reshape(n, -1)),
        np.log(conf.reshape(n, *conf.shape[2:])),
        data.compressed,
        data.gold_index,
    )
    np.testing.assert_allclose(model.label_probs_.to_numpy(), probs.mean(0), rtol=1e-10)
    stored = dt.log_likelihood["labels"].transpose("chain", "draw", "item").to_numpy()
    np.testing.assert_allclose(stored.reshape(n, -1), item_ll, rtol=1e-12)


def test_nuts_intervals_contain_means(nuts: tuple) -> None:
    model, *_ = nuts
    summary = model.datatree_.summary
    for name in ("prevalence", "confusion", "annotator_accuracy"):
        da = summary[name]
        mean, low, high = (da.sel(statistic=s) for s in ("mean", "lower", "upper"))
        assert bool((low <= mean).all()) and bool((mean <= high).all()), name
        assert bool((low < high).all()), name
        # The summary is of the posterior draws.
        draws = model.datatree_.posterior[name]
        xr.testing.assert_allclose(mean.drop_vars("statistic"), draws.mean(("chain", "draw")))
    for table, lo, hi in (
        (model.prevalence_, "low", "high"),
        (model.confusion_, "low", "high"),
        (model.annotators_, "accuracy_low", "accuracy_high"),
    ):
        mean = table["mean"] if "mean" in table else table["accuracy"]
        assert (table[lo] <= mean).all() and (mean <= table[hi]).all()
    np.testing.assert_allclose(model.prevalence_["mean"].sum(), 1.0)


def test_nuts_warnings_match_the_diagnostics(nuts: tuple) -> None:
    """Every problem found is emitted as a SamplingWarning, and only those."""
    model, _, _, caught = nuts
    diag = model.diagnostics_
    sampling = [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]
    assert sampling == [f"dawid-skene: {m}" for m in diag.messages]
    others = [w for w in caught if not issubclass(w.category, SamplingWarning)]
    assert others == [], [str(w.message) for w in others]
    assert diag.n_draws == 400
    assert (diag.max_rhat > RHAT_THRESHOLD) == any("R-hat" in m for m in sampling)
    assert diag.n_divergent == int(model.datatree_.sample_stats["diverging"].sum())


def test_nuts_recovers_labels_and_is_in_the_labelled_mode(nuts: tuple) -> None:
    model, frame, truth, _ = nuts
    assert model.diagnostics_.permuted_chains == []
    acc = model.annotators_["accuracy"]
    assert (acc > 1 / 3).mean() > 0.7  # most annotators better than chance


def test_dropped_chain_keeps_requested_settings_in_provenance(
    monkeypatch: pytest.MonkeyPatch, small_sim: cb.Simulation
) -> None:
    """Provenance records the settings asked for (to rerun the fit); what was kept is in the
    diagnostics."""
    prevalence, confusion, data = fake_fixture(small_sim)
    post, stats = fake_posterior(
        prevalence, confusion, data, chain_perms=[IDENTITY, CYCLE, IDENTITY]
    )
    patch_sampler(monkeypatch, post, stats)
    with pytest.warns(SamplingWarning) as record:
        fit = cb.ClassConditional().fit(
            small_sim.annotations, draws=50, tune=10, chains=3, random_seed=0
        )
    assert any("dropped from the posterior" in str(w.message) for w in record)
    assert fit.datatree_.posterior.sizes["chain"] == 2
    assert fit.diagnostics_.permuted_chains == [1]
    assert fit.diagnostics_.n_draws == 100
    assert int(fit.datatree_.attrs["chains"]) == 3


def test_fit_accepts_encoded_data(small_sim: cb.Simulation) -> None:
    a = cb.DawidSkene().fit(small_sim.data, method="map", random_seed=0)
    b = cb.DawidSkene().fit(small_sim.annotations, method="map", random_seed=0)
    pd.testing.assert_frame_equal(a.labels_, b.labels_)
