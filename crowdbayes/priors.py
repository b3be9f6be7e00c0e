"""Priors: the base of every model's frozen priors dataclass, and the checks of its values.

A model's priors are a frozen dataclass deriving from :class:`PriorsBase`: its scalar fields are
checked when it is made (positive, a probability, or any finite location), and it converts to
and from plain JSON-ready values (the form stored in a result's provenance).
"""

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "AccuracyPriors",
    "LogitPriors",
    "PriorsBase",
    "check_positive",
    "check_probability",
    "positive_array",
]


class PriorsBase:
    """Mixin for frozen prior dataclasses: checked fields, JSON-ready ``to_dict``/``from_dict``.

    Every scalar field must be finite and positive, except those in ``probability_fields``
    (strictly between 0 and 1) and ``location_fields`` (any finite number).
    """

    probability_fields: ClassVar[tuple[str, ...]] = ("prior_accuracy",)
    location_fields: ClassVar[tuple[str, ...]] = ()
    #: Earlier names of fields, accepted by :meth:`from_dict` (results saved before a rename).
    renamed_fields: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in self.probability_fields:
                check_probability(value, f.name)
            elif f.name in self.location_fields:
                if not np.isfinite(float(value)):
                    raise ValueError(f"prior {f.name!r} must be finite, got {value}")
            elif isinstance(value, int | float):
                check_positive(value, f.name)

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
        >>> from crowdbayes.models import HierarchicalDawidSkenePriors
        >>> HierarchicalDawidSkenePriors.from_dict({"annotator_scale": 0.5}).error_scale  # old name
        0.5
        """
        values = {cls.renamed_fields.get(key, key): value for key, value in values.items()}
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


@dataclass(frozen=True)
class LogitPriors(PriorsBase):
    """Priors shared by the models with wrong-vs-right label logits pooled around means.

    Parameters
    ----------
    prevalence : float
        Symmetric Dirichlet concentration of the prevalence. Default 3.
    prior_accuracy : float
        Accuracy (errors spread evenly) at which the prior on the population mean logits is
        centred. Default 0.7 (better than chance, which breaks label switching).
    error_mean_sd : float
        Standard deviation of the Normal prior on each population mean logit. Default 1.5.

    Examples
    --------
    >>> round(LogitPriors().mean_location(n_categories=2), 3)
    -0.847
    """

    renamed_fields: ClassVar[dict[str, str]] = {
        "mean_scale": "error_mean_sd",
        "annotator_scale": "error_scale",
    }

    prevalence: float = 3.0
    prior_accuracy: float = 0.7
    error_mean_sd: float = 1.5

    def mean_location(self, n_categories: int) -> float:
        """Prior centre of a wrong-vs-right log-odds: ``log((1-a) / (a (K-1)))``."""
        a = self.prior_accuracy
        return float(np.log((1.0 - a) / (a * (n_categories - 1))))
