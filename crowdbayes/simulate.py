"""Simulate crowd annotations from the package's generative models (seeded).

Every simulator returns a :class:`Simulation`: the long table of labels, the true label of every
item, and the parameters that generated them, so recovery can be checked.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.inference import check_random_seed
from crowdbayes.models._shared import off_diagonal_coords, wrong_label_slots

__all__ = [
    "Simulation",
    "simulate_annotations",
    "simulate_dawid_skene",
    "simulate_glad",
    "simulate_hierarchical_dawid_skene",
    "simulate_item_difficulty",
    "simulate_logistic_random_effects",
    "simulate_mace",
]

#: ``draw_labels(rng, item_index, annotator_index, true_category)``: one label per row.
LabelDraw = Callable[[np.random.Generator, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class Simulation:
    """Simulated annotations with the truth that generated them.

    Attributes
    ----------
    annotations : pandas.DataFrame
        Columns ``item``, ``annotator``, ``label``; one row per label given.
    true_labels : pandas.Series
        True category of every item, indexed by ``item``.
    prevalence : numpy.ndarray, shape (category,)
    confusion : numpy.ndarray, shape (annotator, true_category, category)
        Annotators in the order of ``annotators``.
    categories, annotators : list
    parameters : dict
        Other generating parameters of the model (for example hierarchical means).
    """

    annotations: pd.DataFrame
    true_labels: "pd.Series[Any]"
    prevalence: np.ndarray
    confusion: np.ndarray
    categories: list[Any]
    annotators: list[Any]
    parameters: dict[str, np.ndarray] = field(default_factory=dict)

    @cached_property
    def data(self) -> AnnotationData:
        """The annotations encoded with the simulation's categories.

        Examples
        --------
        >>> simulate_dawid_skene(n_items=10, n_annotators=3, random_seed=0).data.n_items
        10
        """
        return encode_annotations(self.annotations, categories=self.categories)

    def annotator_accuracy(self) -> "pd.Series[float]":
        """Each annotator's true accuracy, averaged over the true prevalence.

        Examples
        --------
        >>> sim = simulate_dawid_skene(n_items=10, n_annotators=3, random_seed=0)
        >>> bool(sim.annotator_accuracy().between(0, 1).all())
        True
        """
        diag = np.diagonal(self.confusion, axis1=1, axis2=2)
        return pd.Series(diag @ self.prevalence, index=pd.Index(self.annotators, name="annotator"))


class _Crowd:
    """The design every simulator shares: random stream, sizes, prevalence and workloads.

    Built once a simulator's own arguments are checked (a missing prevalence is drawn then, a
    Dirichlet(5) draw); the model draws its parameters from ``rng`` and :meth:`simulate` draws
    the rest. The order of the draws is part of the contract: a seed always gives the same
    simulation.
    """

    def __init__(
        self,
        n_items: int,
        n_annotators: int,
        n_categories: int,
        labels_per_item: int | None,
        prevalence: np.ndarray | None,
        workload_skew: float,
        random_seed: int | np.random.Generator | None,
    ) -> None:
        self.rng = check_random_seed(random_seed)
        self.n_items = n_items
        self.n_annotators = n_annotators
        self.n_categories = n_categories
        # 5 labels per item, or every annotator when there are fewer.
        self.labels_per_item = min(5, n_annotators) if labels_per_item is None else labels_per_item
        if prevalence is None:
            prevalence = self.rng.dirichlet(np.full(n_categories, 5.0))
        self.prevalence = np.asarray(prevalence, dtype=float)
        self.workload_skew = workload_skew

    def simulate(
        self,
        confusion: np.ndarray,
        parameters: dict[str, np.ndarray],
        draw_labels: LabelDraw | None = None,
    ) -> Simulation:
        """Draw the true categories, which annotators label which item, then the labels.

        Each item is labelled by ``labels_per_item`` distinct annotators, drawn with log-normal
        weights (standard deviation ``workload_skew``). The labels are drawn by ``draw_labels``,
        by default from the rows of ``confusion`` (annotator, true_category, category), which
        the result records either way.
        """
        rng, n_items, n_annotators = self.rng, self.n_items, self.n_annotators
        labels_per_item = self.labels_per_item
        if not 1 <= labels_per_item <= n_annotators:
            raise ValueError(
                f"labels_per_item must be between 1 and n_annotators ({n_annotators}), "
                f"got {labels_per_item}"
            )
        if n_items < 1:
            raise ValueError(f"n_items must be positive, got {n_items}")
        truth = rng.choice(self.n_categories, size=n_items, p=self.prevalence)
        weights = np.exp(self.workload_skew * rng.standard_normal(n_annotators))
        weights /= weights.sum()
        # Distinct annotators per item: Gumbel top-k over log-weights.
        keys = np.log(weights)[None, :] + rng.gumbel(size=(n_items, n_annotators))
        chosen = np.argpartition(-keys, labels_per_item - 1, axis=1)[:, :labels_per_item]
        item_idx = np.repeat(np.arange(n_items), labels_per_item)
        annotator_idx = chosen.ravel()
        if draw_labels is None:
            labels = _categorical(rng, confusion[annotator_idx, truth[item_idx]])
        else:
            labels = draw_labels(rng, item_idx, annotator_idx, truth[item_idx])

        width = len(str(n_annotators - 1))
        annotators = [f"a{j:0{width}d}" for j in range(n_annotators)]
        annotations = pd.DataFrame(
            {
                "item": item_idx,
                "annotator": np.asarray(annotators, dtype=object)[annotator_idx],
                "label": labels,
            }
        )
        true_labels = pd.Series(
            truth, index=pd.Index(np.arange(n_items), name="item"), name="label"
        )
        return Simulation(
            annotations=annotations,
            true_labels=true_labels,
            prevalence=self.prevalence,
            confusion=confusion,
            categories=list(range(self.n_categories)),
            annotators=annotators,
            parameters=parameters,
        )


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw from each row of (row, category) probabilities, by inversion of one uniform."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > probs.cumsum(axis=1)).sum(axis=1), probs.shape[1] - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _check_categories(n_categories: int) -> None:
    if n_categories < 2:
        raise ValueError(f"n_categories must be at least 2, got {n_categories}")


def _per_error(value: float | np.ndarray, n_categories: int) -> np.ndarray:
    """A scalar or K (K - 1) values, one per off-diagonal cell (row-major), as a new array."""
    n_errors = n_categories * (n_categories - 1)
    return np.broadcast_to(np.asarray(value, dtype=float), (n_errors,)).copy()


def _error_softmax(error_logits: np.ndarray, n_categories: int) -> np.ndarray:
    """(..., K (K - 1)) off-diagonal logits (diagonal 0) -> (..., K, K) probabilities."""
    rows, cols = off_diagonal_coords(n_categories)
    shape = error_logits.shape[:-1]
    logits = np.zeros((*shape, n_categories, n_categories))
    logits[..., rows, cols] = error_logits
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return probs / probs.sum(axis=-1, keepdims=True)


def _difficulty_parameters(
    n_categories: int, error_mean: float | np.ndarray, item_scale: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Checked per-cell ``error_mean`` and ``item_scale`` of the item-difficulty models."""
    mean, scale = _per_error(error_mean, n_categories), _per_error(item_scale, n_categories)
    if np.any(scale < 0) or not np.all(np.isfinite(scale)):
        raise ValueError("item_scale must be finite and non-negative")
    _check_categories(n_categories)
    return mean, scale


def _with_difficulty(sim: Simulation, typical: np.ndarray) -> Simulation:
    """``sim`` with the error rates of a typical annotator, given their label probabilities.

    ``typical`` is (item, true_category, category); adds ``item_error_rate`` (item,
    true_category) and ``difficulty`` (item: that rate for the item's true category).
    """
    k = np.arange(typical.shape[-1])
    rate = 1.0 - typical[:, k, k]
    truth = sim.true_labels.to_numpy()
    difficulty = rate[np.arange(len(truth)), truth]
    return replace(
        sim, parameters={**sim.parameters, "item_error_rate": rate, "difficulty": difficulty}
    )


def simulate_annotations(
    prevalence: np.ndarray,
    confusion: np.ndarray,
    *,
    n_items: int,
    labels_per_item: int = 5,
    workload_skew: float = 1.0,
    random_seed: int | np.random.Generator | None = None,
    parameters: dict[str, np.ndarray] | None = None,
) -> Simulation:
    """Draw items' true categories and annotators' labels from given parameters.

    Each item is labelled by ``labels_per_item`` distinct annotators, drawn with weights that
    make some annotators much busier than others (as on real platforms).

    Parameters
    ----------
    prevalence : numpy.ndarray, shape (category,)
    confusion : numpy.ndarray, shape (annotator, true_category, category)
    n_items : int
    labels_per_item : int
        At most the number of annotators.
    workload_skew : float
        0 gives every annotator the same expected workload; larger values make workloads more
        uneven (log-normal weights with this standard deviation).
    random_seed : int, numpy.random.Generator or None
    parameters : dict, optional
        Extra generating parameters to record.

    Returns
    -------
    Simulation

    Examples
    --------
    >>> import numpy as np
    >>> conf = np.array([[[0.9, 0.1], [0.2, 0.8]]] * 3)
    >>> sim = simulate_annotations(np.array([0.5, 0.5]), conf, n_items=4, labels_per_item=2,
    ...                            random_seed=0)
    >>> len(sim.annotations)
    8
    """
    confusion = np.asarray(confusion, dtype=float)
    n_annotators, n_categories = confusion.shape[0], confusion.shape[1]
    crowd = _Crowd(
        n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
    )
    return crowd.simulate(confusion, dict(parameters or {}))


def simulate_dawid_skene(
    *,
    n_items: int = 500,
    n_annotators: int = 20,
    n_categories: int = 3,
    labels_per_item: int | None = None,
    prevalence: np.ndarray | None = None,
    mean_accuracy: float = 0.75,
    accuracy_concentration: float = 10.0,
    spammer_fraction: float = 0.1,
    workload_skew: float = 1.0,
    random_seed: int | np.random.Generator | None = None,
) -> Simulation:
    """Simulate a realistic crowd under the Dawid-Skene model.

    Each annotator's accuracy for each true category is drawn from a Beta distribution with
    mean ``mean_accuracy``; errors are spread by a Dirichlet(1) draw, so confusions are
    asymmetric. A ``spammer_fraction`` of annotators answer uniformly at random.

    Parameters
    ----------
    n_items, n_annotators, n_categories : int
    labels_per_item : int, optional
        Default: 5, or every annotator when there are fewer.
    prevalence : numpy.ndarray, optional
        Default: a Dirichlet(5) draw.
    mean_accuracy : float
        Mean of the per-category accuracies of non-spammers.
    accuracy_concentration : float
        Concentration (a + b) of the Beta prior of accuracies.
    spammer_fraction : float
        Share of annotators that label uniformly at random.
    workload_skew : float
        See :func:`simulate_annotations`.
    random_seed : int, numpy.random.Generator or None

    Returns
    -------
    Simulation

    Examples
    --------
    >>> sim = simulate_dawid_skene(n_items=50, n_annotators=8, random_seed=3)
    >>> sim.annotations.shape
    (250, 3)
    >>> sim.confusion.shape
    (8, 3, 3)
    """
    _check_categories(n_categories)
    crowd = _Crowd(
        n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
    )
    a = mean_accuracy * accuracy_concentration
    b = (1.0 - mean_accuracy) * accuracy_concentration
    accuracy = crowd.rng.beta(a, b, size=(n_annotators, n_categories))
    errors = crowd.rng.dirichlet(np.ones(n_categories - 1), size=(n_annotators, n_categories))
    confusion = np.empty((n_annotators, n_categories, n_categories))
    for k in range(n_categories):
        others = [c for c in range(n_categories) if c != k]
        confusion[:, k, k] = accuracy[:, k]
        confusion[:, k, others] = (1.0 - accuracy[:, k])[:, None] * errors[:, k]
    n_spammers = int(round(spammer_fraction * n_annotators))
    spammers = crowd.rng.choice(n_annotators, size=n_spammers, replace=False)
    confusion[spammers] = 1.0 / n_categories
    return crowd.simulate(confusion, {"spammers": np.sort(spammers)})


def simulate_hierarchical_dawid_skene(
    *,
    n_items: int = 500,
    n_annotators: int = 20,
    n_categories: int = 3,
    labels_per_item: int | None = None,
    prevalence: np.ndarray | None = None,
    error_mean: float | np.ndarray = -2.5,
    error_scale: float | np.ndarray = 0.8,
    workload_skew: float = 1.0,
    random_seed: int | np.random.Generator | None = None,
) -> Simulation:
    """Simulate from the hierarchical Dawid-Skene model.

    Off-diagonal log-odds (wrong label vs right label) are
    ``error_mean + error_scale * Normal(0, 1)`` per annotator; the diagonal logit is 0, as in
    :func:`~crowdbayes.models.build_hierarchical_dawid_skene`.

    Parameters
    ----------
    n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
        The crowd, as in :func:`simulate_dawid_skene`.
    error_mean, error_scale : float or numpy.ndarray of shape (K (K - 1),)
        Population mean and between-annotator standard deviation of each off-diagonal logit.

    Returns
    -------
    Simulation
        ``parameters`` holds ``error_mean``, ``error_scale`` and ``annotator_effect``.

    Examples
    --------
    >>> sim = simulate_hierarchical_dawid_skene(n_items=30, n_annotators=6, random_seed=2)
    >>> sorted(sim.parameters)
    ['annotator_effect', 'error_mean', 'error_scale']
    """
    crowd = _Crowd(
        n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
    )
    mean, scale = _per_error(error_mean, n_categories), _per_error(error_scale, n_categories)
    effect = crowd.rng.standard_normal((n_annotators, len(mean)))
    return crowd.simulate(
        _error_softmax(mean + scale * effect, n_categories),
        {"error_mean": mean, "error_scale": scale, "annotator_effect": effect},
    )


def simulate_item_difficulty(
    *,
    n_items: int = 500,
    n_annotators: int = 20,
    n_categories: int = 3,
    labels_per_item: int | None = None,
    prevalence: np.ndarray | None = None,
    error_mean: float | np.ndarray = -2.0,
    item_scale: float | np.ndarray = 1.0,
    workload_skew: float = 1.0,
    random_seed: int | np.random.Generator | None = None,
) -> Simulation:
    """Simulate from the item-difficulty model (ItemDiff): exchangeable annotators.

    Item :math:`i` of true category :math:`k` is labelled :math:`h \\ne k` with log-odds
    ``error_mean[k, h] + item_scale[k, h] * item_effect[i, m(k, h)]`` against the right label
    (``item_effect`` standard normal, :math:`m` the rank of :math:`h` among the wrong labels),
    as in :func:`~crowdbayes.models.item_difficulty.build_item_difficulty`. Every annotator
    labels alike.

    Parameters
    ----------
    n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
        The crowd, as in :func:`simulate_dawid_skene`.
    error_mean : float or numpy.ndarray of shape (K (K - 1),)
        Log-odds of each wrong label on an item of average difficulty (off-diagonal cells
        row-major).
    item_scale : float or numpy.ndarray of shape (K (K - 1),)
        Between-item standard deviation of those log-odds: the strength of item difficulty.
        0 gives the one-confusion-matrix model; 2 or more gives items that most annotators
        get wrong next to items nobody gets wrong.

    Returns
    -------
    Simulation
        ``confusion`` is the average item's (the same for every annotator); ``parameters``
        holds ``error_mean``, ``item_scale``, ``item_effect`` (item, K - 1),
        ``item_error_rate`` (item, true_category: a typical annotator's error rate) and
        ``difficulty`` (item: that error rate for the item's true category).

    Examples
    --------
    >>> sim = simulate_item_difficulty(n_items=30, n_annotators=6, item_scale=2.0,
    ...                                random_seed=2)
    >>> sorted(sim.parameters)
    ['difficulty', 'error_mean', 'item_effect', 'item_error_rate', 'item_scale']
    >>> sim.parameters["difficulty"].shape
    (30,)
    """
    mean, scale = _difficulty_parameters(n_categories, error_mean, item_scale)
    crowd = _Crowd(
        n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
    )
    effect = crowd.rng.standard_normal((n_items, n_categories - 1))
    item_probs = _error_softmax(
        mean[None, :] + scale[None, :] * effect[:, wrong_label_slots(n_categories)], n_categories
    )  # (item, true_category, category)
    average = _error_softmax(mean, n_categories)
    sim = crowd.simulate(
        np.broadcast_to(average, (n_annotators, n_categories, n_categories)).copy(),
        {"error_mean": mean, "item_scale": scale, "item_effect": effect},
        lambda rng, item, annotator, truth: _categorical(rng, item_probs[item, truth]),
    )
    return _with_difficulty(sim, item_probs)


def simulate_logistic_random_effects(
    *,
    n_items: int = 500,
    n_annotators: int = 20,
    n_categories: int = 3,
    labels_per_item: int | None = None,
    prevalence: np.ndarray | None = None,
    error_mean: float | np.ndarray = -2.5,
    error_scale: float | np.ndarray = 0.8,
    item_scale: float | np.ndarray = 1.0,
    workload_skew: float = 1.0,
    random_seed: int | np.random.Generator | None = None,
) -> Simulation:
    """Simulate from the logistic random-effects model (LogRndEff).

    Annotator :math:`j` labels item :math:`i` of true category :math:`k` as :math:`h \\ne k`
    with log-odds ``error_mean[k, h] + error_scale[k, h] * annotator_effect[j, k, h]
    + item_scale[k, h] * item_effect[i, m(k, h)]`` against the right label (effects standard
    normal), as in
    :func:`~crowdbayes.models.logistic_random_effects.build_logistic_random_effects`.

    Parameters
    ----------
    n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
        The crowd, as in :func:`simulate_dawid_skene`.
    error_mean, error_scale : float or numpy.ndarray of shape (K (K - 1),)
        Population mean and between-annotator standard deviation of each off-diagonal logit.
    item_scale : float or numpy.ndarray of shape (K (K - 1),)
        Between-item standard deviation: the strength of item difficulty (0: hierarchical
        Dawid-Skene; 2 or more: strong).

    Returns
    -------
    Simulation
        ``confusion`` is each annotator's on an item of average difficulty; ``parameters``
        holds ``error_mean``, ``error_scale``, ``annotator_effect`` (annotator, K (K - 1)),
        ``item_scale``, ``item_effect`` (item, K - 1), ``item_error_rate`` (item,
        true_category: the error rate of a typical annotator, effect 0) and ``difficulty``
        (item: that error rate for the item's true category).

    Examples
    --------
    >>> sim = simulate_logistic_random_effects(n_items=30, n_annotators=6, random_seed=2)
    >>> sim.confusion.shape, sim.parameters["annotator_effect"].shape
    ((6, 3, 3), (6, 6))
    """
    mean, item_sd = _difficulty_parameters(n_categories, error_mean, item_scale)
    annotator_sd = _per_error(error_scale, n_categories)
    crowd = _Crowd(
        n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
    )
    annotator_effect = crowd.rng.standard_normal((n_annotators, len(mean)))
    item_effect = crowd.rng.standard_normal((n_items, n_categories - 1))
    annotator_logits = mean[None, :] + annotator_sd[None, :] * annotator_effect
    item_shift = item_sd[None, :] * item_effect[:, wrong_label_slots(n_categories)]

    def draw_labels(
        rng: np.random.Generator, item: np.ndarray, annotator: np.ndarray, truth: np.ndarray
    ) -> np.ndarray:
        probs = _error_softmax(annotator_logits[annotator] + item_shift[item], n_categories)
        return _categorical(rng, probs[np.arange(len(item)), truth])

    sim = crowd.simulate(
        _error_softmax(annotator_logits, n_categories),
        {
            "error_mean": mean,
            "error_scale": annotator_sd,
            "annotator_effect": annotator_effect,
            "item_scale": item_sd,
            "item_effect": item_effect,
        },
        draw_labels,
    )
    return _with_difficulty(sim, _error_softmax(mean[None, :] + item_shift, n_categories))


def simulate_mace(
    *,
    n_items: int = 500,
    n_annotators: int = 20,
    n_categories: int = 3,
    labels_per_item: int | None = None,
    prevalence: np.ndarray | None = None,
    competence_mean: float = 1.0,
    competence_scale: float = 1.0,
    spam_concentration: float = 2.0,
    workload_skew: float = 1.0,
    random_seed: int | np.random.Generator | None = None,
) -> Simulation:
    """Simulate from the hierarchical MACE model (:func:`~crowdbayes.models.mace.build_mace`).

    Annotator ``j`` labels an item correctly with probability
    ``competence_j = logit^-1(competence_mean + competence_scale * Normal(0, 1))``, and
    otherwise draws the label from its spam distribution, a ``Dirichlet(spam_concentration)``
    draw.

    Parameters
    ----------
    n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
        The crowd, as in :func:`simulate_dawid_skene`.
    competence_mean, competence_scale : float
        Population mean and standard deviation of the competence logits.
    spam_concentration : float
        Symmetric Dirichlet concentration of the spam distributions.

    Returns
    -------
    Simulation
        ``confusion`` is ``competence * I + (1 - competence) * spam_distribution``;
        ``parameters`` holds ``competence`` (annotator), ``spam_distribution``
        (annotator, category), ``competence_mean``, ``competence_scale`` and
        ``competence_effect``.

    Examples
    --------
    >>> sim = simulate_mace(n_items=30, n_annotators=6, random_seed=2)
    >>> sorted(sim.parameters)  # doctest: +NORMALIZE_WHITESPACE
    ['competence', 'competence_effect', 'competence_mean', 'competence_scale',
     'spam_distribution']
    >>> bool(np.allclose(sim.confusion.sum(axis=2), 1.0))
    True
    """
    _check_categories(n_categories)
    if competence_scale < 0 or spam_concentration <= 0:
        raise ValueError(
            "competence_scale must be non-negative and spam_concentration positive, got "
            f"{competence_scale} and {spam_concentration}"
        )
    crowd = _Crowd(
        n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
    )
    effect = crowd.rng.standard_normal(n_annotators)
    competence = _sigmoid(competence_mean + competence_scale * effect)
    spam = crowd.rng.dirichlet(np.full(n_categories, float(spam_concentration)), size=n_annotators)
    eye = np.eye(n_categories)
    confusion = (
        competence[:, None, None] * eye[None] + (1.0 - competence)[:, None, None] * spam[:, None, :]
    )
    parameters = {
        "competence": competence,
        "spam_distribution": spam,
        "competence_mean": np.asarray(float(competence_mean)),
        "competence_scale": np.asarray(float(competence_scale)),
        "competence_effect": effect,
    }
    return crowd.simulate(confusion, parameters)


def simulate_glad(
    *,
    n_items: int = 500,
    n_annotators: int = 20,
    n_categories: int = 3,
    labels_per_item: int | None = None,
    prevalence: np.ndarray | None = None,
    ability_mean: float = 1.5,
    ability_scale: float = 1.0,
    item_scale: float = 0.5,
    workload_skew: float = 1.0,
    random_seed: int | np.random.Generator | None = None,
) -> Simulation:
    """Simulate from the hierarchical GLAD model (:func:`~crowdbayes.models.glad.build_glad`).

    Annotator ``j`` labels item ``i`` correctly with probability
    ``logit^-1(ability_j * inverse_difficulty_i)``, and otherwise gives one of the other
    categories at random, with ``ability_j = ability_mean + ability_scale * Normal(0, 1)`` and
    ``inverse_difficulty_i = exp(item_scale * Normal(0, 1))``. Which annotators label which
    items is drawn as in :func:`simulate_annotations`.

    Parameters
    ----------
    n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
        The crowd, as in :func:`simulate_dawid_skene`.
    ability_mean, ability_scale : float
        Population mean and standard deviation of the abilities.
    item_scale : float
        Standard deviation of the log inverse difficulties (mean 0).

    Returns
    -------
    Simulation
        ``confusion`` is each annotator's confusion on an item of average difficulty (inverse
        difficulty 1). ``parameters`` holds ``ability`` (annotator), ``inverse_difficulty``
        (item), ``difficulty`` (item: the true error rate of a typical annotator,
        ``1 - logit^-1(ability_mean * inverse_difficulty)``), ``ability_mean``,
        ``ability_scale``, ``ability_effect``, ``item_scale`` and ``item_effect``.

    Examples
    --------
    >>> sim = simulate_glad(n_items=30, n_annotators=6, random_seed=2)
    >>> sim.parameters["difficulty"].shape, sim.confusion.shape
    ((30,), (6, 3, 3))
    >>> bool(np.all((sim.parameters["difficulty"] > 0) & (sim.parameters["difficulty"] < 1)))
    True
    """
    _check_categories(n_categories)
    if ability_scale < 0 or item_scale < 0:
        raise ValueError(
            "ability_scale and item_scale must be non-negative, got "
            f"{ability_scale} and {item_scale}"
        )
    crowd = _Crowd(
        n_items, n_annotators, n_categories, labels_per_item, prevalence, workload_skew, random_seed
    )
    ability_effect = crowd.rng.standard_normal(n_annotators)
    ability = ability_mean + ability_scale * ability_effect
    item_effect = crowd.rng.standard_normal(n_items)
    inverse_difficulty = np.exp(item_scale * item_effect)
    eye = np.eye(n_categories)
    right = _sigmoid(ability)[:, None, None]
    confusion = right * eye[None] + (1.0 - right) / (n_categories - 1) * (1.0 - eye[None])

    def draw_labels(
        rng: np.random.Generator, item: np.ndarray, annotator: np.ndarray, truth: np.ndarray
    ) -> np.ndarray:
        # The first uniform per label is left unused: it is where the confusion-matrix models
        # draw their labels, and the draws a seed gives must not move.
        rng.random(len(item))
        correct = rng.random(len(item)) < _sigmoid(ability[annotator] * inverse_difficulty[item])
        # A wrong label: one of the K - 1 other categories, uniformly.
        wrong = (truth + rng.integers(1, n_categories, size=len(item))) % n_categories
        return np.where(correct, truth, wrong)

    parameters = {
        "ability": ability,
        "inverse_difficulty": inverse_difficulty,
        "difficulty": _sigmoid(-ability_mean * inverse_difficulty),
        "ability_mean": np.asarray(float(ability_mean)),
        "ability_scale": np.asarray(float(ability_scale)),
        "ability_effect": ability_effect,
        "item_scale": np.asarray(float(item_scale)),
        "item_effect": item_effect,
    }
    return crowd.simulate(confusion, parameters, draw_labels)
