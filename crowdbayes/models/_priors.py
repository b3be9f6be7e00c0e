"""Shared helpers for prior specifications: validation and broadcasting of concentrations."""

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["PriorsBase", "positive_array", "dirichlet_confusion"]


class PriorsBase:
    """Mixin for frozen prior dataclasses: JSON-ready ``to_dict`` and ``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        """Return the priors as plain Python values (arrays become nested lists).

        Examples
        --------
        >>> from crowdbayes.models import DawidSkenePriors
        >>> DawidSkenePriors().to_dict()["pseudo_count"]
        8.0
        """
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():  # type: ignore[call-overload]
            out[key] = np.asarray(value).tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Any:
        """Rebuild priors from :meth:`to_dict` output.

        Examples
        --------
        >>> from crowdbayes.models import DawidSkenePriors
        >>> p = DawidSkenePriors(prior_accuracy=0.8)
        >>> DawidSkenePriors.from_dict(p.to_dict()) == p
        True
        """
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown prior field(s) for {cls.__name__}: {sorted(unknown)}")
        return cls(**values)


def positive_array(value: ArrayLike, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Broadcast a positive scalar or array to ``shape``, with a clear error otherwise.

    Examples
    --------
    >>> positive_array(2.0, (3,), "prevalence").tolist()
    [2.0, 2.0, 2.0]
    """
    arr = np.asarray(value, dtype=float)
    try:
        out = np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(
            f"prior {name!r} has shape {arr.shape}, which does not fit the data's shape {shape}"
        ) from None
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise ValueError(f"prior {name!r} must be finite and positive")
    return np.array(out, dtype=float)


def check_probability(value: float, name: str) -> float:
    """Check that ``value`` lies strictly between 0 and 1."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"prior {name!r} must lie strictly between 0 and 1, got {value}")
    return value


def check_positive(value: float, name: str) -> float:
    """Check that ``value`` is finite and positive."""
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"prior {name!r} must be finite and positive, got {value}")
    return value


def dirichlet_confusion(
    pseudo_count: float, prior_accuracy: float, n_categories: int
) -> np.ndarray:
    """Dirichlet concentration of a confusion row: ``pseudo_count`` split with mass on the diagonal.

    The diagonal entry is ``pseudo_count * prior_accuracy``; the rest is spread evenly over the
    other categories (rater's default parametrisation).

    Examples
    --------
    >>> dirichlet_confusion(8.0, 0.6, 3).round(2).tolist()
    [[4.8, 1.6, 1.6], [1.6, 4.8, 1.6], [1.6, 1.6, 4.8]]
    """
    off = pseudo_count * (1.0 - prior_accuracy) / (n_categories - 1)
    out = np.full((n_categories, n_categories), off)
    np.fill_diagonal(out, pseudo_count * prior_accuracy)
    return out


@dataclass(frozen=True)
class AccuracyPriors(PriorsBase):
    """Priors of the models with accuracies and evenly spread errors.

    Parameters
    ----------
    prevalence : float
        Symmetric Dirichlet concentration of the prevalence. Default 3.
    accuracy_alpha, accuracy_beta : float
        Beta prior of each accuracy. Default Beta(4.8, 3.2): mean 0.6 with pseudo-count 8, as
        the Dawid-Skene default.

    Examples
    --------
    >>> AccuracyPriors().accuracy_alpha
    4.8
    """

    prevalence: float = 3.0
    accuracy_alpha: float = 4.8
    accuracy_beta: float = 3.2

    def __post_init__(self) -> None:
        check_positive(self.prevalence, "prevalence")
        check_positive(self.accuracy_alpha, "accuracy_alpha")
        check_positive(self.accuracy_beta, "accuracy_beta")


__all__ += ["check_probability", "check_positive", "AccuracyPriors"]
