"""Stick-breaking transform of a simplex: the unconstrained space NUTS samples Dirichlets in.

PyMC's default simplex transform is the centred log-ratio
:math:`y_j = \\log x_j - \\overline{\\log x}` (last coordinate dropped). Under a Dirichlet its
coordinates are correlated (they share the mean), and a diagonal mass matrix cannot undo that:
on Dawid-Skene at 25k labels nutpie needed 24 leapfrog steps per draw with it against 15 for the
same model in NumPyro, whose Dirichlet uses stick-breaking. Stick-breaking (Stan's and
NumPyro's simplex transform) maps :math:`y \\in \\mathbb{R}^{K-1}` to the stick fractions
:math:`z_j = \\sigma(y_j - \\log(K - 1 - j))`, :math:`x_j = z_j \\prod_{l<j} (1 - z_l)`; under
a Dirichlet(:math:`\\alpha`) prior the fractions are independent Beta variables, so the
coordinates are a priori independent. The offset maps :math:`y = 0` to the uniform simplex.
"""

from typing import Any

import pytensor.tensor as pt
from pymc.logprob.transforms import Transform

__all__ = ["StickBreaking", "stick_breaking"]


def _offset(n: Any) -> pt.TensorVariable:
    # log(K - 1 - j) for j = 0 .. K - 2, with n = K - 1 coordinates
    return pt.log(n - pt.arange(n).astype("float64"))


def _exclusive_cumsum(x: pt.TensorVariable) -> pt.TensorVariable:
    total = pt.cumsum(x, axis=-1)
    return pt.concatenate([pt.zeros_like(x[..., :1]), total[..., :-1]], axis=-1)


class StickBreaking(Transform):
    """Stick-breaking simplex transform (as in Stan and NumPyro), for ``default_transform``.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> t = StickBreaking()
    >>> x = np.array([0.2, 0.5, 0.3])
    >>> y = t.forward(x).eval()
    >>> np.allclose(t.backward(y).eval(), x)
    True
    >>> np.allclose(t.backward(np.zeros(2)).eval(), 1 / 3)
    True
    >>> with pm.Model():
    ...     p = pm.Dirichlet("p", a=np.ones(3), default_transform=StickBreaking())
    """

    name = "stick_breaking"
    ndim_supp = 1

    def forward(self, value: Any, *inputs: Any) -> pt.TensorVariable:
        value = pt.as_tensor_variable(value)
        # y_j = logit(z_j) + offset_j with z_j = x_j / sum_{l>=j} x_l, so
        # logit(z_j) = log x_j - log sum_{l>j} x_l
        tail = pt.cumsum(value[..., ::-1], axis=-1)[..., ::-1]  # sum_{l>=j} x_l
        n = value.shape[-1] - 1
        return pt.log(value[..., :-1]) - pt.log(tail[..., 1:]) + _offset(n)

    def _log_parts(self, value: Any) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        value = pt.as_tensor_variable(value)
        x = value - _offset(value.shape[-1])
        log_z = -pt.softplus(-x)
        log_one_minus_z = -pt.softplus(x)
        return log_z, log_one_minus_z

    def backward(self, value: Any, *inputs: Any) -> pt.TensorVariable:
        log_z, log_one_minus_z = self._log_parts(value)
        log_rest = _exclusive_cumsum(log_one_minus_z)
        log_x = pt.concatenate(
            [log_z + log_rest, pt.sum(log_one_minus_z, axis=-1, keepdims=True)], axis=-1
        )
        return pt.exp(log_x)

    def log_jac_det(self, value: Any, *inputs: Any) -> pt.TensorVariable:
        log_z, log_one_minus_z = self._log_parts(value)
        log_rest = _exclusive_cumsum(log_one_minus_z)
        return pt.sum(log_z + log_one_minus_z + log_rest, axis=-1)


stick_breaking = StickBreaking()
