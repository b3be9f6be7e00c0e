"""Simulate crowd annotations from the package's generative models (seeded).

Every simulator returns a :class:`Simulation`: the long table of labels, the true label of every
item, and the parameters that generated them, so recovery can be checked.
"""

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.inference import check_random_seed

__all__ = [
    "Simulation",
    "simulate_annotations",
    "simulate_dawid_skene",
    "simulate_hierarchical_dawid_skene",
]


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
    rng = check_random_seed(random_seed)
    prevalence = np.asarray(prevalence, dtype=float)
    confusion = np.asarray(confusion, dtype=float)
    n_annotators, n_categories = confusion.shape[0], confusion.shape[1]
    if not 1 <= labels_per_item <= n_annotators:
        raise ValueError(
            f"labels_per_item must be between 1 and n_annotators ({n_annotators}), "
            f"got {labels_per_item}"
        )
    if n_items < 1:
        raise ValueError(f"n_items must be positive, got {n_items}")
    truth = rng.choice(n_categories, size=n_items, p=prevalence)
    weights = np.exp(workload_skew * rng.standard_normal(n_annotators))
    weights /= weights.sum()
    # Distinct annotators per item: Gumbel top-k over log-weights.
    keys = np.log(weights)[None, :] + rng.gumbel(size=(n_items, n_annotators))
    chosen = np.argpartition(-keys, labels_per_item - 1, axis=1)[:, :labels_per_item]
    item_idx = np.repeat(np.arange(n_items), labels_per_item)
    annotator_idx = chosen.ravel()
    probs = confusion[annotator_idx, truth[item_idx]]
    cum = probs.cumsum(axis=1)
    u = rng.random(len(item_idx))[:, None]
    labels = np.minimum((u > cum).sum(axis=1), n_categories - 1)

    width = len(str(n_annotators - 1))
    annotators = [f"a{j:0{width}d}" for j in range(n_annotators)]
    categories = list(range(n_categories))
    annotations = pd.DataFrame(
        {
            "item": item_idx,
            "annotator": np.asarray(annotators, dtype=object)[annotator_idx],
            "label": labels,
        }
    )
    true_labels = pd.Series(truth, index=pd.Index(np.arange(n_items), name="item"), name="label")
    return Simulation(
        annotations=annotations,
        true_labels=true_labels,
        prevalence=prevalence,
        confusion=confusion,
        categories=categories,
        annotators=annotators,
        parameters=dict(parameters or {}),
    )


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
    rng = check_random_seed(random_seed)
    if n_categories < 2:
        raise ValueError(f"n_categories must be at least 2, got {n_categories}")
    if prevalence is None:
        prevalence = rng.dirichlet(np.full(n_categories, 5.0))
    a = mean_accuracy * accuracy_concentration
    b = (1.0 - mean_accuracy) * accuracy_concentration
    accuracy = rng.beta(a, b, size=(n_annotators, n_categories))
    errors = rng.dirichlet(np.ones(n_categories - 1), size=(n_annotators, n_categories))
    confusion = np.empty((n_annotators, n_categories, n_categories))
    for k in range(n_categories):
        others = [c for c in range(n_categories) if c != k]
        confusion[:, k, k] = accuracy[:, k]
        confusion[:, k, others] = (1.0 - accuracy[:, k])[:, None] * errors[:, k]
    n_spammers = int(round(spammer_fraction * n_annotators))
    spammers = rng.choice(n_annotators, size=n_spammers, replace=False)
    confusion[spammers] = 1.0 / n_categories
    return simulate_annotations(
        prevalence,
        confusion,
        n_items=n_items,
        labels_per_item=min(5, n_annotators) if labels_per_item is None else labels_per_item,
        workload_skew=workload_skew,
        random_seed=rng,
        parameters={"spammers": np.sort(spammers)},
    )


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
    n_items, n_annotators, n_categories : int
    labels_per_item : int, optional
        Default: 5, or every annotator when there are fewer.
    prevalence : numpy.ndarray, optional
        Default: a Dirichlet(5) draw.
    error_mean, error_scale : float or numpy.ndarray of shape (K (K - 1),)
        Population mean and between-annotator standard deviation of each off-diagonal logit.
    workload_skew : float
    random_seed : int, numpy.random.Generator or None

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
    from crowdbayes.models.hierarchical_dawid_skene import off_diagonal_coords

    rng = check_random_seed(random_seed)
    if prevalence is None:
        prevalence = rng.dirichlet(np.full(n_categories, 5.0))
    rows, cols = off_diagonal_coords(n_categories)
    n_errors = len(rows)
    mean = np.broadcast_to(np.asarray(error_mean, dtype=float), (n_errors,)).copy()
    scale = np.broadcast_to(np.asarray(error_scale, dtype=float), (n_errors,)).copy()
    effect = rng.standard_normal((n_annotators, n_errors))
    logits = np.zeros((n_annotators, n_categories, n_categories))
    logits[:, rows, cols] = mean + scale * effect
    confusion = np.exp(logits - logits.max(axis=-1, keepdims=True))
    confusion /= confusion.sum(axis=-1, keepdims=True)
    return simulate_annotations(
        prevalence,
        confusion,
        n_items=n_items,
        labels_per_item=min(5, n_annotators) if labels_per_item is None else labels_per_item,
        workload_skew=workload_skew,
        random_seed=rng,
        parameters={"error_mean": mean, "error_scale": scale, "annotator_effect": effect},
    )


# --- simulators of the item-difficulty models ---


# --- simulators of the spammer and ability models ---
