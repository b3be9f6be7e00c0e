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

The backward map and its log-Jacobian, which every log-density evaluation needs, are one fused
Op, :class:`StickBreakingLog`: the log simplex point and the log-Jacobian of a row in one pass
(the products :math:`\\prod_{l<j}(1 - z_l)` are running sums in log space), with its own
gradient Op and numba and JAX implementations. The forward map (used for starting values)
needs the sums :math:`\\sum_{l>j} x_l`: :class:`ExclusiveCumsum`, a small Op over the last
axis (PyTensor's ``CumOp`` lowers to far more numba IR, its axis handling permutes arrays), with
a numba kernel, a JAX implementation and an exact gradient (the reversed exclusive cumulative
sum).
"""

from typing import Any, cast

import numba
import numpy as np
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from crowdbayes.fast.codegen import source_version

__all__ = [
    "ExclusiveCumsum",
    "StickBreaking",
    "StickBreakingLog",
    "exclusive_cumsum",
    "stick_breaking",
    "stick_breaking_log",
]


@numba.njit(cache=True, nogil=True)
def _exclusive_cumsum_kernel(x: np.ndarray, reverse: bool) -> np.ndarray:  # pragma: no cover
    n = x.shape[-1]
    out = np.empty(x.shape)
    if out.size == 0:
        return out
    flat_x = np.ascontiguousarray(x).reshape((-1, n))
    flat_out = out.reshape((-1, n))
    for i in range(flat_x.shape[0]):
        total = 0.0
        for step in range(n):
            j = n - 1 - step if reverse else step
            flat_out[i, j] = total
            total += flat_x[i, j]
    return out


@numba.njit(cache=True, nogil=True)
def _forward_kernel(x: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    return _exclusive_cumsum_kernel(x, False)


@numba.njit(cache=True, nogil=True)
def _reverse_kernel(x: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    return _exclusive_cumsum_kernel(x, True)


class ExclusiveCumsum(Op):
    """Exclusive cumulative sum over the last axis: :math:`y_j = \\sum_{l<j} x_l` (float64).

    With ``reverse=True``, :math:`y_j = \\sum_{l>j} x_l`; each is the other's gradient. Use
    :func:`exclusive_cumsum`.
    """

    __props__ = ("reverse",)

    def __init__(self, reverse: bool = False):
        self.reverse = bool(reverse)

    def make_node(self, x: Any) -> Apply:  # type: ignore[override]
        x = pt.as_tensor_variable(x)
        if x.ndim < 1 or x.dtype != "float64":
            raise TypeError("ExclusiveCumsum needs a float64 tensor with at least one dimension")
        return Apply(self, [x], [x.type()])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        outputs[0][0] = _exclusive_cumsum_kernel(np.asarray(inputs[0]), self.reverse)

    def infer_shape(self, node: Apply, shapes: list[Any]) -> list[Any]:
        return [shapes[0]]

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        return [ExclusiveCumsum(reverse=not self.reverse)(cotangents[0])]


_SOURCE_VERSION = source_version(__file__)


@register_funcify_default_op_cache_key(ExclusiveCumsum)
def _numba_exclusive_cumsum(op: Op, node: Apply | None = None, **kwargs: Any) -> Any:
    kernel = _reverse_kernel if cast(ExclusiveCumsum, op).reverse else _forward_kernel
    return kernel, _SOURCE_VERSION


def exclusive_cumsum(x: Any, reverse: bool = False) -> pt.TensorVariable:
    """Exclusive cumulative sum of ``x`` over its last axis (PyTensor).

    Parameters
    ----------
    x : TensorVariable or array_like
        Cast to float64.
    reverse : bool
        Sum the later entries instead of the earlier ones.

    Returns
    -------
    TensorVariable
        Same shape as ``x``; its first entry (last, with ``reverse``) is 0.

    Examples
    --------
    >>> exclusive_cumsum(np.array([[1.0, 2.0, 3.0]])).eval().tolist()
    [[0.0, 1.0, 3.0]]
    >>> exclusive_cumsum(np.array([1.0, 2.0, 3.0]), reverse=True).eval().tolist()
    [5.0, 3.0, 0.0]
    """
    x = pt.as_tensor_variable(x).astype("float64")
    return cast(pt.TensorVariable, ExclusiveCumsum(reverse=reverse)(x))


@numba.njit(cache=True, nogil=True, inline="always")
def _softplus(t: float) -> float:  # pragma: no cover - compiled
    return max(t, 0.0) + np.log1p(np.exp(-abs(t)))


@numba.njit(cache=True, nogil=True)
def _stick_forward_kernel(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    n = y.shape[-1]
    lead = y.shape[:-1]
    flat = np.ascontiguousarray(y).reshape((-1, n))
    offset = np.log(n - np.arange(n))  # log(K - 1 - j): y = 0 is the uniform simplex
    log_x = np.empty((flat.shape[0], n + 1))
    jac = np.empty(flat.shape[0])
    for i in range(flat.shape[0]):
        rest = 0.0  # sum of log(1 - z_l) over l < j
        total = 0.0
        for j in range(n):
            t = flat[i, j] - offset[j]
            log_one_minus_z = -_softplus(t)
            log_z = t + log_one_minus_z
            log_x[i, j] = log_z + rest
            total += log_z + log_one_minus_z + rest
            rest += log_one_minus_z
        log_x[i, n] = rest
        jac[i] = total
    return log_x.reshape((*lead, n + 1)), jac.reshape(lead)


@numba.njit(cache=True, nogil=True)
def _stick_grad_kernel(
    y: np.ndarray, log_x_grad: np.ndarray, jac_grad: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    n = y.shape[-1]
    flat = np.ascontiguousarray(y).reshape((-1, n))
    g = np.ascontiguousarray(log_x_grad).reshape((-1, n + 1))
    h = np.ascontiguousarray(jac_grad).reshape(-1)
    offset = np.log(n - np.arange(n))
    out = np.empty(flat.shape)
    for i in range(flat.shape[0]):
        later = g[i, n]  # sum of the log_x gradient over entries after j
        for j in range(n - 1, -1, -1):
            t = flat[i, j] - offset[j]
            e = np.exp(-abs(t))
            z = 1.0 / (1.0 + e) if t >= 0 else e / (1.0 + e)  # sigmoid(t), one exp
            out[i, j] = g[i, j] * (1.0 - z) - z * later + h[i] * (1.0 - z * (n + 1 - j))
            later += g[i, j]
    return out.reshape(y.shape)


class StickBreakingLog(Op):
    """Log simplex values and log-Jacobian of the stick-breaking transform, in one pass.

    For ``y`` of shape (..., K - 1) returns ``log_x`` (..., K), the log of the simplex point
    :class:`StickBreaking` maps ``y`` to, and ``log_jac`` (...), its log-Jacobian determinant.
    One ``exp`` and one ``log1p`` per coordinate (the gradient: one more ``exp``), where the
    composed PyTensor expression (two softplus, their sigmoids, ``exp`` of the log simplex and
    ``log`` of it again in the Dirichlet density and the likelihood) took about ten:
    transcendental functions were most of the prior's share of a small model's gradient.
    """

    __props__ = ()

    def make_node(self, y: Any) -> Apply:  # type: ignore[override]
        y = pt.as_tensor_variable(y)
        if y.ndim < 1 or y.dtype != "float64":
            raise TypeError("StickBreakingLog needs a float64 tensor with at least one dimension")
        last = y.type.shape[-1]
        log_x = pt.TensorType(
            "float64", shape=(*y.type.shape[:-1], None if last is None else last + 1)
        )
        jac = pt.TensorType("float64", shape=y.type.shape[:-1])
        return Apply(self, [y], [log_x(), jac()])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        log_x, jac = _stick_forward_kernel(np.asarray(inputs[0], dtype=np.float64))
        outputs[0][0] = log_x
        outputs[1][0] = np.asarray(jac)

    def infer_shape(self, node: Apply, shapes: list[Any]) -> list[Any]:
        (shape,) = shapes
        return [(*shape[:-1], shape[-1] + 1), tuple(shape[:-1])]

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        (y,) = inputs
        log_x_grad, jac_grad = cotangents
        if isinstance(log_x_grad.type, DisconnectedType):
            log_x_grad = pt.zeros_like(outputs[0])
        if isinstance(jac_grad.type, DisconnectedType):
            jac_grad = pt.zeros_like(outputs[1])
        return [StickBreakingLogGrad()(y, log_x_grad, jac_grad)]


class StickBreakingLogGrad(Op):
    """Gradient of :class:`StickBreakingLog` with respect to ``y``, given both outputs' ones."""

    __props__ = ()

    def make_node(self, y: Any, log_x_grad: Any, jac_grad: Any) -> Apply:  # type: ignore[override]
        y = pt.as_tensor_variable(y)
        log_x_grad = pt.as_tensor_variable(log_x_grad).astype("float64")
        jac_grad = pt.as_tensor_variable(jac_grad).astype("float64")
        return Apply(self, [y, log_x_grad, jac_grad], [y.type()])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        y, log_x_grad, jac_grad = (np.asarray(v, dtype=np.float64) for v in inputs)
        outputs[0][0] = _stick_grad_kernel(y, log_x_grad, jac_grad)

    def infer_shape(self, node: Apply, shapes: list[Any]) -> list[Any]:
        return [shapes[0]]

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]


def stick_breaking_log(y: Any) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Log simplex point and log-Jacobian of stick-breaking from ``y`` (..., K - 1) (PyTensor).

    Examples
    --------
    >>> log_x, log_jac = stick_breaking_log(np.zeros(2))
    >>> np.exp(log_x.eval()).round(4).tolist()  # y = 0 is the uniform simplex
    [0.3333, 0.3333, 0.3333]
    """
    log_x, jac = cast(list, StickBreakingLog()(pt.as_tensor_variable(y).astype("float64")))
    return cast(pt.TensorVariable, log_x), cast(pt.TensorVariable, jac)


@register_funcify_default_op_cache_key(StickBreakingLog)
def _numba_stick_breaking_log(op: Op, node: Apply | None = None, **kwargs: Any) -> Any:
    return _stick_forward_kernel, _SOURCE_VERSION


@register_funcify_default_op_cache_key(StickBreakingLogGrad)
def _numba_stick_breaking_log_grad(op: Op, node: Apply | None = None, **kwargs: Any) -> Any:
    return _stick_grad_kernel, _SOURCE_VERSION


def register_jax() -> None:
    """Give :class:`ExclusiveCumsum` its JAX implementation (called by the JAX samplers)."""
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    @jax_funcify.register(ExclusiveCumsum)
    def _jax_exclusive_cumsum(op: Op, **kwargs: Any) -> Any:
        reverse = cast(ExclusiveCumsum, op).reverse

        def exclusive(x: Any) -> Any:
            if reverse:
                total = jnp.cumsum(x[..., ::-1], axis=-1)[..., ::-1]
                return total - x
            return jnp.cumsum(x, axis=-1) - x

        return exclusive

    def stick_parts(y: Any) -> tuple[Any, Any]:
        n = y.shape[-1]
        t = y - jnp.log(n - jnp.arange(n, dtype=y.dtype))
        return t, -jnp.logaddexp(0.0, t)  # t and log(1 - z)

    @jax_funcify.register(StickBreakingLog)
    def _jax_stick_breaking_log(op: Op, **kwargs: Any) -> Any:
        def forward(y: Any) -> Any:
            t, log_one_minus_z = stick_parts(y)
            log_z = t + log_one_minus_z
            rest = jnp.cumsum(log_one_minus_z, axis=-1) - log_one_minus_z
            log_x = jnp.concatenate([log_z + rest, rest[..., -1:] + log_one_minus_z[..., -1:]], -1)
            return log_x, jnp.sum(log_z + log_one_minus_z + rest, axis=-1)

        return forward

    @jax_funcify.register(StickBreakingLogGrad)
    def _jax_stick_breaking_log_grad(op: Op, **kwargs: Any) -> Any:
        def grad(y: Any, log_x_grad: Any, jac_grad: Any) -> Any:
            n = y.shape[-1]
            log_x_grad = jnp.broadcast_to(jnp.asarray(log_x_grad), (*y.shape[:-1], n + 1))
            jac_grad = jnp.broadcast_to(jnp.asarray(jac_grad), y.shape[:-1])
            t, _ = stick_parts(y)
            z = jax.nn.sigmoid(t)
            later = jnp.cumsum(log_x_grad[..., ::-1], axis=-1)[..., ::-1][..., 1:]
            count = n + 1 - jnp.arange(n, dtype=y.dtype)
            return (
                log_x_grad[..., :-1] * (1.0 - z)
                - z * later
                + jac_grad[..., None] * (1.0 - z * count)
            )

        return grad


def _offset(n: Any) -> pt.TensorVariable:
    # log(K - 1 - j) for j = 0 .. K - 2, with n = K - 1 coordinates
    return pt.log(n - pt.arange(n).astype("float64"))


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

    # no underscore: PyMC recovers the untransformed name by splitting the value name on "_"
    name = "stickbreaking"
    ndim_supp = 1

    def forward(self, value: Any, *inputs: Any) -> pt.TensorVariable:
        value = pt.as_tensor_variable(value)
        # y_j = logit(z_j) + offset_j with z_j = x_j / sum_{l>=j} x_l, so
        # logit(z_j) = log x_j - log sum_{l>j} x_l
        tail = exclusive_cumsum(value, reverse=True)  # sum_{l>j} x_l
        n = value.shape[-1] - 1
        return pt.log(value[..., :-1]) - pt.log(tail[..., :-1]) + _offset(n)

    def backward(self, value: Any, *inputs: Any) -> pt.TensorVariable:
        # exp of the fused log simplex: PyTensor rewrites the log(exp(.)) of the Dirichlet
        # density and of the likelihood back to the fused output
        return pt.exp(stick_breaking_log(value)[0])

    def log_jac_det(self, value: Any, *inputs: Any) -> pt.TensorVariable:
        return stick_breaking_log(value)[1]  # the same Apply node as backward's: merged


stick_breaking = StickBreaking()
