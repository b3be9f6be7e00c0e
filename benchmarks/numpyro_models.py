"""Dawid-Skene and hierarchical Dawid-Skene hand-written in NumPyro: the speed peers.

Same priors and parametrisation as crowdbayes' ``dawid-skene`` (rater's defaults: prevalence
Dirichlet(3), confusion rows Dirichlet with pseudo-count 8 and prior accuracy 0.6) and
``hierarchical-dawid-skene`` (diagonal logit 0, off-diagonal logits non-centred around
population means); the true category is marginalised with a log-sum-exp over the long format,
in the style of the NumPyro annotation example (Paun et al. 2018). Labels come in as the
compressed rows crowdbayes itself uses (unique item/annotator/label with counts, sorted by
item), so both engines evaluate the same sums.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist


def _item_loglik(log_prev: Any, terms: Any, rows: dict[str, Any]) -> Any:
    per_item = jax.ops.segment_sum(
        terms * rows["count"][:, None],
        rows["item"],
        num_segments=rows["n_items"],
        indices_are_sorted=True,
    )
    return jax.nn.logsumexp(log_prev[None, :] + per_item, axis=1)


def dawid_skene(rows: dict[str, Any], alpha: np.ndarray, beta: np.ndarray) -> None:
    """Dawid-Skene with Dirichlet priors; true category summed out."""
    prevalence = numpyro.sample("prevalence", dist.Dirichlet(jnp.asarray(alpha)))
    confusion = numpyro.sample("confusion", dist.Dirichlet(jnp.asarray(beta)).to_event(2))
    log_conf = jnp.log(confusion)
    terms = log_conf[rows["annotator"], :, rows["label"]]
    numpyro.factor("labels", _item_loglik(jnp.log(prevalence), terms, rows).sum())


def hierarchical_dawid_skene(
    rows: dict[str, Any],
    n_annotators: int,
    n_categories: int,
    mean_location: float,
    mean_scale: float = 1.5,
    annotator_scale: float = 1.0,
    prevalence_concentration: float = 3.0,
) -> None:
    """Hierarchical Dawid-Skene, non-centred, diagonal logit fixed at 0."""
    k = n_categories
    off_r, off_c = np.nonzero(~np.eye(k, dtype=bool))
    n_err = len(off_r)
    prevalence = numpyro.sample(
        "prevalence", dist.Dirichlet(jnp.full(k, prevalence_concentration))
    )
    mean = numpyro.sample("error_mean", dist.Normal(mean_location, mean_scale).expand([n_err]))
    scale = numpyro.sample("error_scale", dist.HalfNormal(annotator_scale).expand([n_err]))
    effect = numpyro.sample(
        "annotator_effect", dist.Normal(0.0, 1.0).expand([n_annotators, n_err]).to_event(2)
    )
    logits = jnp.zeros((n_annotators, k, k)).at[:, off_r, off_c].set(mean + scale * effect)
    log_conf = jax.nn.log_softmax(logits, axis=-1)
    numpyro.deterministic("confusion", jnp.exp(log_conf))
    terms = log_conf[rows["annotator"], :, rows["label"]]
    numpyro.factor("labels", _item_loglik(jnp.log(prevalence), terms, rows).sum())
