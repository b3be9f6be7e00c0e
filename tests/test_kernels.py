"""The confusion-matrix likelihood (its reference graph and the fused numba kernel that replaces
it), the stick-breaking transform, and the label-posterior kernel, each against an independent
computation (PyTensor's own indexing and autodiff, finite differences, SciPy)."""

import importlib.util
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats
from scipy.special import logsumexp

import crowdbayes as cb
import crowdbayes.fast.draws as fast_draws
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.estimators import BayesianCrowdModel
from crowdbayes.fast.draws import (
    label_joint_draws,
    label_posterior_draws,
    normalise_joint,
    row_inputs,
)
from crowdbayes.fast.kernels import (
    _MAX_GENERATED_CATEGORIES,
    _marginal_kernel_for,
    _marginal_log_space_kernel,
    marginal_log_likelihood,
    marginal_row_inputs,
)
from crowdbayes.fast.rewrites import FusedConfusionMixture
from crowdbayes.fast.transforms import (
    StickBreaking,
    StickBreakingLog,
    exclusive_cumsum,
    register_jax,
    stick_breaking_log,
)
from crowdbayes.models._shared import ConfusionMixture, sum_rows_by_item
from crowdbayes.summaries import CONFUSION_ROWS_TAG, LABEL_JOINT

MODES = ["FAST_COMPILE", "NUMBA"]
HAS_JAX = importlib.util.find_spec("jax") is not None


def random_rows(seed: int, n_items: int = 40, n_annotators: int = 7, k: int = 3):
    rng = np.random.default_rng(seed)
    n = n_items * 4
    frame = pd.DataFrame(
        {
            "item": rng.integers(0, n_items, n),
            "annotator": rng.integers(0, n_annotators, n),
            "label": rng.integers(0, k, n),
        }
    )
    data = encode_annotations(frame, categories=list(range(k)))
    assert (data.compressed.count > 1).any()  # repeated rows are exercised
    log_conf = np.log(rng.dirichlet(np.ones(k), size=(data.n_annotators, k)))
    return data, log_conf


def indexing_form(log_confusion: pt.TensorVariable, data: AnnotationData) -> pt.TensorVariable:
    """sum_r count_r log theta[a_r, k, y_r] per item by PyTensor indexing of the unique rows."""
    rows = data.compressed
    terms = log_confusion[rows.annotator_index, :, rows.label_index] * rows.count[:, None]
    return sum_rows_by_item(terms, rows.item_index, rows.n_items)


def reference_marginal(
    log_prevalence: pt.TensorVariable,
    log_confusion: pt.TensorVariable,
    data: AnnotationData,
    gold: np.ndarray,
) -> pt.TensorVariable:
    """Per-item log-sum-exp of the indexing form; gold items keep their gold term."""
    joint = log_prevalence[None, :] + indexing_form(log_confusion, data)
    per_item = pt.logsumexp(joint, axis=1)
    known = np.flatnonzero(gold >= 0)
    return pt.set_subtensor(per_item[known], joint[known, gold[known]])


def mixture(
    log_prevalence: Any, log_confusion: Any, data: AnnotationData, gold: np.ndarray | None = None
) -> pt.TensorVariable:
    """The models' likelihood node on the data's label rows (one row per label given)."""
    gold = np.full(data.n_items, -1) if gold is None else gold
    out = ConfusionMixture()(
        log_prevalence, log_confusion, data.annotator_index, data.label_index, data.item_index, gold
    )
    return out  # type: ignore[return-value]


def op_names(function: Any) -> set[str]:
    """Names of the Ops in a compiled PyTensor (or PyMC point) function's graph."""
    function = getattr(function, "f", function)
    return {type(node.op).__name__ for node in function.maker.fgraph.apply_nodes}


LIKELIHOOD_OPS = {"ConfusionMixture", "ConfusionMixturePullback", "FusedConfusionMixture"}


@pytest.mark.parametrize("mode", MODES)
def test_mixture_per_item_and_gradient_match_indexing_form(mode: str) -> None:
    """Per-item values, and the gradient of a weighted sum (a cotangent that varies by item, so
    the reference pullback runs in every mode), against PyTensor's indexing form."""
    data, log_conf = random_rows(0)
    gold = np.full(data.n_items, -1)
    gold[[1, 4]] = [0, 2]
    lp = pt.tensor("lp", shape=(3,), dtype="float64")
    lc = pt.tensor3("lc", dtype="float64")
    weights = np.random.default_rng(1).normal(size=data.n_items)
    fused = mixture(lp, lc, data, gold)
    reference = reference_marginal(lp, lc, data, gold)
    outputs = [
        fused,
        reference,
        *pytensor.grad((fused * weights).sum(), [lp, lc]),
        *pytensor.grad((reference * weights).sum(), [lp, lc]),
    ]
    f = pytensor.function([lp, lc], outputs, mode=mode)
    assert op_names(f) & LIKELIHOOD_OPS == {"ConfusionMixture", "ConfusionMixturePullback"}
    log_prev = np.log(np.array([0.5, 0.3, 0.2]))
    got, want, got_lp, got_lc, want_lp, want_lc = f(log_prev, log_conf)
    assert got.shape == (data.n_items,)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got_lp, want_lp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_lc, want_lc, rtol=1e-12, atol=1e-12)
    assert np.abs(got_lc).sum() > 0


def test_mixture_hand_computation() -> None:
    frame = pd.DataFrame(
        {"item": [1, 1, 1, 2], "annotator": ["a", "b", "b", "b"], "label": [0, 1, 1, 0]}
    )
    data = encode_annotations(frame)
    conf = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.7, 0.3], [0.4, 0.6]]])
    prev = np.array([0.4, 0.6])
    # item 1: a says 0, b says 1 twice; item 2: b says 0
    want = np.log([0.4 * 0.9 * 0.3**2 + 0.6 * 0.2 * 0.6**2, 0.4 * 0.7 + 0.6 * 0.4])
    out = mixture(pt.as_tensor(np.log(prev)), pt.as_tensor(np.log(conf)), data).eval()
    np.testing.assert_allclose(out, want, rtol=1e-12)
    # the fused kernel's total, and with item 2 gold in category 1: log(0.6 * 0.4)
    rows = marginal_row_inputs(data.compressed, 2, np.array([-1, -1]))
    total, _, _ = marginal_log_likelihood(np.log(prev), np.log(conf), *rows)
    assert float(total) == pytest.approx(want.sum(), rel=1e-12)
    rows = marginal_row_inputs(data.compressed, 2, np.array([-1, 1]))
    total, _, _ = marginal_log_likelihood(np.log(prev), np.log(conf), *rows)
    assert float(total) == pytest.approx(want[0] + np.log(0.6 * 0.4), rel=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 3, 3), (3, 3)])
def test_shared_confusion_is_broadcast_to_annotators(shape: tuple, mode: str) -> None:
    """One confusion for every annotator, broadcast into the likelihood: value and gradient of
    the total (the fused kernel under numba) against the indexing form."""
    data, log_conf = random_rows(2)
    shared = log_conf[0].reshape(shape)
    lp = pt.tensor("lp", shape=(3,), dtype="float64")
    lc = pt.tensor("lc", dtype="float64", shape=shape)
    full = pt.broadcast_to(lc, (data.n_annotators, 3, 3))
    gold = np.full(data.n_items, -1)
    fused = mixture(lp, full, data).sum()
    reference = reference_marginal(lp, full, data, gold).sum()
    f = pytensor.function(
        [lp, lc],
        [fused, reference, pytensor.grad(fused, lc), pytensor.grad(reference, lc)],
        mode=mode,
    )
    assert ("FusedConfusionMixture" in op_names(f)) == (mode == "NUMBA")
    got, want, got_grad, want_grad = f(np.log([0.2, 0.5, 0.3]), shared)
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-12)


def test_second_derivative_matches_reference_and_fused_has_none() -> None:
    """The mixture's gradient is a PyTensor graph, so its own derivative is the reference's;
    the fused kernel (made after the gradient graph is built) has no derivative."""
    data, log_conf = random_rows(3)
    gold = np.full(data.n_items, -1)
    gold[2] = 1
    lp = pt.tensor("lp", shape=(3,), dtype="float64")
    lc = pt.tensor3("lc", dtype="float64")
    direction = np.random.default_rng(3).normal(size=log_conf.shape)
    outputs = []
    for total in (mixture(lp, lc, data, gold).sum(), reference_marginal(lp, lc, data, gold).sum()):
        g = pytensor.grad(total, lc)
        outputs += pytensor.grad((g * direction).sum(), [lp, lc])
    got_lp, got_lc, want_lp, want_lc = pytensor.function([lp, lc], outputs, mode="FAST_COMPILE")(
        np.log([0.2, 0.5, 0.3]), log_conf
    )
    np.testing.assert_allclose(got_lp, want_lp, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_lc, want_lc, rtol=1e-10, atol=1e-12)
    assert np.abs(got_lc).max() > 0
    rows = marginal_row_inputs(data.compressed, 3, gold)
    fused_total = FusedConfusionMixture(3)(lp, lc, *rows)[0]
    with pytest.raises(NotImplementedError, match="not implemented"):
        pytensor.grad(fused_total, lc)


@pytest.mark.skipif(not HAS_JAX, reason="jax extra not installed")
def test_jax_implementation_matches() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    data, log_conf = random_rows(4)
    lp = pt.tensor("lp", shape=(3,), dtype="float64")
    lc = pt.tensor3("lc", dtype="float64")
    fused = mixture(lp, lc, data)
    weights = np.random.default_rng(5).normal(size=data.n_items)
    outputs = [fused, *pytensor.grad((fused * weights).sum(), [lp, lc])]
    log_prev = np.log([0.2, 0.5, 0.3])
    got = pytensor.function([lp, lc], outputs, mode="JAX")(log_prev, log_conf)
    want = pytensor.function([lp, lc], outputs, mode="FAST_COMPILE")(log_prev, log_conf)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["FAST_COMPILE", "NUMBA", "JAX"])
@pytest.mark.parametrize("static_k", [True, False])
def test_fused_marginal_and_gradient_match_indexing_form(mode: str, static_k: bool) -> None:
    """The total (with gold items) equals log-sum-exp over the indexing form, and its gradient
    equals PyTensor's autodiff of that form; with the number of categories known to the graph
    (under numba, the fused kernel specialised for it replaces the total and its gradient) or
    not (the reference graph runs)."""
    if mode == "JAX":
        if not HAS_JAX:
            pytest.skip("jax extra not installed")
        import jax

        jax.config.update("jax_enable_x64", True)
    data, log_conf = random_rows(6)
    gold = np.full(data.n_items, -1)
    gold[[0, 3, 7]] = [2, 0, 1]
    log_prev = np.log(np.array([0.5, 0.3, 0.2]))
    lp = pt.tensor("lp", shape=(3,) if static_k else (None,), dtype="float64")
    lc = pt.tensor3("lc", dtype="float64")
    fused = mixture(lp, lc, data, gold).sum()
    reference = reference_marginal(lp, lc, data, gold).sum()
    outputs = [
        fused,
        reference,
        *pytensor.grad(fused, [lp, lc]),
        *pytensor.grad(reference, [lp, lc]),
    ]
    f = pytensor.function([lp, lc], outputs, mode=mode)
    fused_ops = op_names(f) & LIKELIHOOD_OPS
    if mode == "NUMBA" and static_k:
        assert fused_ops == {"FusedConfusionMixture"}
    else:
        assert fused_ops == {"ConfusionMixture", "ConfusionMixturePullback"}
    got, want, g_lp, g_lc, w_lp, w_lc = f(log_prev, log_conf)
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    np.testing.assert_allclose(np.asarray(g_lp), w_lp, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(g_lc), w_lc, rtol=1e-10, atol=1e-12)


def _numpy_marginal(log_prev, log_conf, rows, gold):
    """Reference: joint by ``np.add.at``, SciPy's log-sum-exp, softmax responsibilities."""
    item = np.repeat(np.arange(len(rows[3]) - 1), np.diff(rows[3]))
    annotator, label, count = rows[0], rows[1], rows[2]
    joint = np.tile(log_prev, (len(rows[3]) - 1, 1))
    np.add.at(joint, item, count[:, None] * log_conf[annotator, :, label])
    per_item = logsumexp(joint, axis=1)
    resp = np.exp(joint - per_item[:, None])
    known = np.flatnonzero(gold >= 0)
    per_item[known] = joint[known, gold[known]]
    resp[known] = np.eye(len(log_prev))[gold[known]]
    grad_conf = np.zeros_like(log_conf)
    np.add.at(grad_conf, (annotator, slice(None), label), count[:, None] * resp[item])
    return per_item.sum(), resp.sum(axis=0), grad_conf


def _marginal_case(case: str, k: int, unit: bool = False):
    rng = np.random.default_rng(k)
    if case == "random":
        data, log_conf = random_rows(k, k=k)
        rows = row_inputs(data.compressed)
        gold = np.full(data.n_items, -1)
        gold[[0, 3]] = [k - 1, 0]
        return np.log(rng.dirichlet(np.ones(k))), log_conf, rows, gold
    # 4 items of 600 rows. Annotators 0-2 are near-certain: item 0 (random labels) keeps the
    # categories far apart, item 2 (all 0, then all k-1) loses one to underflow and needs the
    # log-space pass, item 3 is gold. Annotator 3 gives label k-1 probability ~0.01 under
    # every category: item 1 (600 such rows) shrinks all categories alike and is rescaled.
    n_rows = 600
    annotator = np.tile(np.arange(3), (4, n_rows // 3))
    annotator[1] = 3
    labels = rng.integers(0, k, (4, n_rows))
    labels[1] = k - 1
    labels[2, : n_rows // 2], labels[2, n_rows // 2 :] = 0, k - 1
    conf = np.full((4, k, k), 1e-4 / (k - 1))
    conf[:, np.arange(k), np.arange(k)] = 1 - 1e-4
    conf[3, :, k - 1] = 0.01
    conf[3, k - 1, k - 1] = 0.012
    others = conf[3, :, : k - 1]
    conf[3, :, : k - 1] = others / others.sum(axis=1, keepdims=True) * (1 - conf[3, :, k - 1 :])
    log_conf = np.log(conf)
    if case == "underflow":
        log_conf[0, 0, 1] = -800.0  # exp underflows to 0: items 0 and 2 need log space
        log_conf[1, 0, 1] = -np.inf  # (the gold item, category 1, never uses it)
    elif case == "positive":
        log_conf[2, 0, 0] = 0.3  # not a probability: the whole pass runs in log space
    counts = rng.choice([1.0, 1.0, 1.0, 2.0], (4, n_rows))
    if unit:  # every row once: the generated kernel's blocked path for items 0-2
        counts[:] = 1.0
    rows = [
        annotator.ravel().astype(np.int64),
        labels.ravel().astype(np.int64),
        counts.ravel(),
        np.arange(0, 4 * n_rows + 1, n_rows, dtype=np.int64),
    ]
    return np.log(rng.dirichlet(np.ones(k))), log_conf, rows, np.array([-1, -1, -1, 1])


def _kernel_inputs(rows: list[np.ndarray], gold: np.ndarray, k: int) -> list[np.ndarray]:
    # marginal_log_likelihood's data inputs: rows, gold, then cell and unit computed by hand
    annotator, label, count, starts = rows
    cell = annotator * k + label
    unit = np.array(
        [np.all(count[a:b] == 1.0) for a, b in zip(starts[:-1], starts[1:], strict=True)],
        dtype=np.int8,
    )
    return [*rows, np.asarray(gold, dtype=np.int64), cell, unit]


@pytest.mark.parametrize("k", [2, 3, 5, 9, 13])
@pytest.mark.parametrize(
    ("case", "unit"),
    [
        ("random", False),  # random rows always repeat some (random_rows asserts it)
        *((case, unit) for case in ("long_items", "underflow", "positive") for unit in (0, 1)),
    ],
)
def test_product_space_marginal_matches_log_space(case: str, unit: bool, k: int) -> None:
    """The probability-space kernel (generated for the number of categories, up to
    ``_MAX_GENERATED_CATEGORIES``; the log-space kernel with the same signature above) and the
    public entry point equal the log-space kernel and a NumPy/SciPy reference, through
    rescaling (per row, and per block of rows when every count is one), underflow to zero,
    -inf log-probabilities, repeated rows, gold items and the all-log-space fallback."""
    log_prev, log_conf, rows, gold = _marginal_case(case, k, unit)
    inputs = _kernel_inputs(rows, gold, k)
    if unit:
        assert inputs[-1][:3].all()
    want = _numpy_marginal(log_prev, log_conf, rows, gold)
    log_space = _marginal_log_space_kernel(log_prev, log_conf, *inputs)
    generated = k <= _MAX_GENERATED_CATEGORIES
    assert (_marginal_kernel_for(k) is _marginal_log_space_kernel) == (not generated)
    for kernel in (_marginal_kernel_for(k), marginal_log_likelihood):
        got = kernel(log_prev, log_conf, *inputs)
        for g, w, ls in zip(got, want, log_space, strict=True):
            np.testing.assert_allclose(np.asarray(g), w, rtol=1e-12, atol=1e-9)
            np.testing.assert_allclose(np.asarray(g), np.asarray(ls), rtol=1e-12, atol=1e-9)
    assert np.isfinite(float(want[0]))
    if k + 1 <= _MAX_GENERATED_CATEGORIES:  # a kernel generated for another number refuses
        with pytest.raises(ValueError, match="wrong number of categories"):
            _marginal_kernel_for(k + 1)(log_prev, log_conf, *inputs)


def _label_rows(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(annotator, label, item) with one row per label given: each unique row ``count`` times."""
    annotator, label, count, starts = rows
    item = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    times = count.astype(np.int64)
    assert np.array_equal(times, count)
    return np.repeat(annotator, times), np.repeat(label, times), np.repeat(item, times)


@pytest.mark.parametrize("k", [2, 3, 5, 9, 12, 13])
@pytest.mark.parametrize("case", ["random", "long_items", "underflow", "positive"])
def test_kernel_matches_the_reference_graph(case: str, k: int) -> None:
    """:func:`marginal_log_likelihood` (what the numba rewrite runs) against the models' own
    reference graph, :class:`ConfusionMixture` on one row per label given, and PyTensor's
    gradient of it: gold items, labels repeated (counts above one), 2 to 13 categories (the
    generated kernels and the log-space one), and probabilities extreme enough to force the
    log-space redo."""
    log_prev, log_conf, rows, gold = _marginal_case(case, k)
    assert (rows[2] > 1).any() and (gold >= 0).any()
    annotator, label, item = _label_rows(rows)
    lp = pt.tensor("lp", shape=(k,), dtype="float64")
    lc = pt.tensor3("lc", dtype="float64")
    total = ConfusionMixture()(lp, lc, annotator, label, item, gold).sum()  # type: ignore[union-attr]
    f = pytensor.function([lp, lc], [total, *pytensor.grad(total, [lp, lc])], mode="FAST_COMPILE")
    want = f(log_prev, log_conf)
    got = marginal_log_likelihood(log_prev, log_conf, *_kernel_inputs(rows, gold, k))
    assert np.isfinite(float(want[0]))
    assert float(got[0]) == pytest.approx(float(want[0]), rel=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-10, atol=1e-9)


def test_marginal_row_inputs_match_the_hand_computation() -> None:
    data, _ = random_rows(2, k=4)
    gold = np.full(data.n_items, -1)
    rows = row_inputs(data.compressed)
    got = marginal_row_inputs(data.compressed, 4, gold)
    want = _kernel_inputs(rows, gold, 4)
    assert [a.dtype for a in got] == [a.dtype for a in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert 0 < want[-1].sum() < data.n_items  # items with and without repeated rows


# --------------------------------------------------------------------------- compiled models
#: The models whose labels depend on the true category only through a confusion matrix per
#: annotator: their likelihood is a ConfusionMixture.
CONFUSION_MODELS = [
    "dawid-skene",
    "class-conditional",
    "one-coin",
    "hierarchical-dawid-skene",
    "mace",
]


@pytest.fixture(scope="module")
def confusion_data() -> AnnotationData:
    """Simulated labels with some repeated and some items gold."""
    sim = cb.simulate_dawid_skene(n_items=30, n_annotators=5, n_categories=3, random_seed=4)
    frame = pd.concat([sim.annotations, sim.annotations.iloc[:7]])
    return encode_annotations(frame, gold=sim.true_labels.iloc[:4].to_dict())


def _random_points(model: pm.Model, n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    start = model.initial_point()
    return [
        {k: v + rng.normal(scale=0.5, size=v.shape) for k, v in start.items()} for _ in range(n)
    ]


def test_confusion_models_are_the_models_with_confusion_rows(
    confusion_data: AnnotationData,
) -> None:
    """The list above is the models whose ``label_joint`` is tagged as built on confusion rows
    (the summaries then compute it from the stored confusion draws)."""
    tagged = [
        name
        for name, cls in cb.MODELS.items()
        if issubclass(cls, BayesianCrowdModel)
        and getattr(cls.builder(confusion_data)[LABEL_JOINT].tag, CONFUSION_ROWS_TAG, False)
    ]
    assert tagged == CONFUSION_MODELS


@pytest.mark.parametrize("name", CONFUSION_MODELS)
def test_models_compile_to_the_fused_kernel_under_numba_only(
    name: str, confusion_data: AnnotationData
) -> None:
    """Each confusion-matrix model's log density and gradient compiled for numba run the fused
    kernel (no reference node left), and equal the reference graph (FAST_COMPILE) to 1e-10;
    the C (and JAX) backends keep the reference graph."""
    if HAS_JAX:
        import jax

        jax.config.update("jax_enable_x64", True)
        register_jax()  # the stick-breaking transform's Ops
    model = cb.get_model(name).builder(confusion_data)
    compiled = {
        mode: (model.compile_logp(mode=mode), model.compile_dlogp(mode=mode))
        for mode in ("NUMBA", "FAST_COMPILE", "CVM", *(["JAX"] if HAS_JAX else []))
    }
    for mode, functions in compiled.items():
        for function in functions:
            ops = op_names(function) & LIKELIHOOD_OPS
            if mode == "NUMBA":
                assert ops == {"FusedConfusionMixture"}, mode
            else:
                assert ops and ops <= {"ConfusionMixture", "ConfusionMixturePullback"}, mode
    for point in _random_points(model, 3):
        want_logp, want_dlogp = (f(point) for f in compiled["FAST_COMPILE"])
        assert np.isfinite(want_logp) and np.abs(want_dlogp).max() > 0
        for mode in compiled:
            logp, dlogp = (f(point) for f in compiled[mode])
            assert float(logp) == pytest.approx(float(want_logp), rel=1e-10), mode
            np.testing.assert_allclose(dlogp, want_dlogp, rtol=1e-10, atol=1e-10, err_msg=mode)


# --------------------------------------------------------------------------- stick-breaking
@pytest.mark.parametrize("k", [2, 3, 5])
def test_stick_breaking_round_trip_and_jacobian(k: int) -> None:
    t = StickBreaking()
    rng = np.random.default_rng(k)
    y = pt.vector("y", dtype="float64")
    x = t.backward(y)
    jac = pytensor.function([y], pytensor.gradient.jacobian(x[:-1], y))
    log_det = pytensor.function([y], t.log_jac_det(y))
    forward = pytensor.function([y], t.forward(x))
    for _ in range(3):
        yv = rng.normal(scale=2.0, size=k - 1)
        xv = t.backward(yv).eval()
        assert xv.sum() == pytest.approx(1.0) and (xv > 0).all()
        np.testing.assert_allclose(forward(yv), yv, atol=1e-10)
        assert log_det(yv) == pytest.approx(np.log(abs(np.linalg.det(jac(yv)))), rel=1e-10)
    np.testing.assert_allclose(t.backward(np.zeros(k - 1)).eval(), np.full(k, 1 / k))


def test_stick_breaking_batched_rows() -> None:
    t = StickBreaking()
    x = np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 3))
    y = t.forward(x).eval()
    assert y.shape == (2, 3, 3)
    np.testing.assert_allclose(t.backward(y).eval(), x, rtol=1e-10)
    assert t.log_jac_det(y).eval().shape == (2, 3)


def test_stick_breaking_dirichlet_logp_and_sampling_moments() -> None:
    """Without the Jacobian the model's density at forward(x) is the Dirichlet's at x; with it,
    NUTS in the stick-breaking space reproduces the Dirichlet's means."""
    a = np.array([4.8, 1.6, 1.6])
    x = np.array([0.6, 0.15, 0.25])
    with pm.Model() as model:
        pm.Dirichlet("p", a=a, default_transform=StickBreaking())
    value = StickBreaking().forward(x).eval()
    logp = model.compile_logp(jacobian=False)({"p_stickbreaking__": value})
    assert logp == pytest.approx(stats.dirichlet.logpdf(x, a), rel=1e-12)
    with model:
        idata = pm.sample(
            draws=1000,
            tune=500,
            chains=2,
            random_seed=1,
            progressbar=False,
            compute_convergence_checks=False,
            nuts_sampler="pymc",
            cores=1,
        )
    means = idata.posterior["p"].mean(("chain", "draw")).to_numpy()
    np.testing.assert_allclose(means, a / a.sum(), atol=0.03)


def _composed_stick_breaking(y: Any) -> tuple[Any, Any]:
    # the transform as a composition of PyTensor ops (its form before the fused Op)
    n = y.shape[-1]
    t = y - pt.log(n - pt.arange(n).astype("float64"))
    log_z, log_one_minus_z = -pt.softplus(-t), -pt.softplus(t)
    rest = pt.cumsum(log_one_minus_z, axis=-1) - log_one_minus_z
    log_x = pt.concatenate([log_z + rest, log_one_minus_z.sum(axis=-1, keepdims=True)], axis=-1)
    return log_x, (log_z + log_one_minus_z + rest).sum(axis=-1)


@pytest.mark.parametrize("mode", [*MODES, "JAX"])
@pytest.mark.parametrize("shape", [(1,), (4,), (3, 2, 5)])
@pytest.mark.parametrize("used", ["both", "log_x", "log_jac"])
def test_fused_stick_breaking_matches_composition(mode: str, shape: tuple, used: str) -> None:
    """Values and gradients of :class:`StickBreakingLog` against the composed expression and
    PyTensor's autodiff, with either output alone (a disconnected cotangent), extreme inputs
    and, in 3-d, a transposed (non-contiguous) input."""
    if mode == "JAX":
        if importlib.util.find_spec("jax") is None:
            pytest.skip("jax extra not installed")
        register_jax()
    rng = np.random.default_rng(sum(shape))
    # static shapes: JAX cannot split the composed reference's concatenate otherwise
    base = pt.tensor("base", dtype="float64", shape=shape)
    y = base.transpose(1, 0, 2) if len(shape) == 3 else base
    value = rng.normal(scale=3.0, size=shape)
    value.flat[0], value.flat[-1] = 45.0, -45.0
    ours, want = stick_breaking_log(y), _composed_stick_breaking(y)
    viewed = value.transpose(1, 0, 2) if len(shape) == 3 else value
    w_x = rng.normal(size=(*viewed.shape[:-1], viewed.shape[-1] + 1))
    w_j = rng.normal(size=viewed.shape[:-1])

    def objective(log_x: Any, log_jac: Any) -> Any:
        terms = {"log_x": [(log_x * w_x).sum()], "log_jac": [(log_jac * w_j).sum()]}
        return sum(terms["log_x"] + terms["log_jac"] if used == "both" else terms[used])

    f = pytensor.function(
        [base],
        [
            *ours,
            *want,
            pytensor.grad(objective(*ours), base),
            pytensor.grad(objective(*want), base),
        ],
        mode=mode,
    )
    log_x, log_jac, want_x, want_jac, grad, want_grad = f(value)
    np.testing.assert_allclose(log_x, want_x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_jac, want_jac, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)
    assert np.abs(grad).max() > 0.1  # a gradient that could be wrong


def test_fused_stick_breaking_refuses_scalars_and_second_derivatives() -> None:
    with pytest.raises(TypeError, match="float64"):
        StickBreakingLog()(pt.scalar("s", dtype="float64"))
    y = pt.vector("y", dtype="float64")
    g = pytensor.grad(stick_breaking_log(y)[1], y)
    with pytest.raises(Exception, match="not implemented|NullType"):
        pytensor.grad(g.sum(), y)


# --------------------------------------------------------------------------- exclusive cumsum
def _numpy_exclusive(x: np.ndarray, reverse: bool) -> np.ndarray:
    if reverse:
        return np.cumsum(x[..., ::-1], axis=-1)[..., ::-1] - x
    return np.cumsum(x, axis=-1) - x


@pytest.mark.parametrize("mode", [*MODES, "JAX"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)])
def test_exclusive_cumsum_values_and_gradient(mode: str, reverse: bool, shape: tuple) -> None:
    """Against NumPy, and its gradient against PyTensor's autodiff of ``pt.cumsum``; the
    input of the 3-d case is a transposed (non-contiguous) view."""
    if mode == "JAX":
        if importlib.util.find_spec("jax") is None:
            pytest.skip("jax extra not installed")
        register_jax()
    rng = np.random.default_rng(len(shape))
    base = pt.tensor("base", dtype="float64", shape=(None,) * len(shape))
    x = base.transpose(1, 0, 2) if len(shape) == 3 else base
    value = rng.normal(size=shape)
    weights = rng.normal(
        size=np.asarray(value.transpose(1, 0, 2) if len(shape) == 3 else value).shape
    )
    ours = exclusive_cumsum(x, reverse=reverse)
    xr_ = x[..., ::-1] if reverse else x
    inclusive = pt.cumsum(xr_, axis=-1)
    reference = (inclusive[..., ::-1] if reverse else inclusive) - x
    f = pytensor.function(
        [base],
        [
            ours,
            pytensor.grad((ours * weights).sum(), base),
            pytensor.grad((reference * weights).sum(), base),
        ],
        mode=mode,
    )
    got, grad, want_grad = f(value)
    viewed = value.transpose(1, 0, 2) if len(shape) == 3 else value
    np.testing.assert_allclose(got, _numpy_exclusive(viewed, reverse), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)


def test_exclusive_cumsum_refuses_scalars_and_integers() -> None:
    with pytest.raises(TypeError, match="float64"):
        exclusive_cumsum(pt.scalar("s", dtype="float64"))
    assert exclusive_cumsum(np.array([1, 2, 3])).eval().tolist() == [0.0, 1.0, 3.0]


# --------------------------------------------------------------------------- label posterior
def test_normalise_joint_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    joint = rng.normal(size=(4, 6, 3)) * 5
    joint[1, 2, 0] = -np.inf
    gold = np.array([-1, 2, -1, -1, 0, -1])
    expected_ll = logsumexp(joint, axis=2)
    expected = np.exp(joint - expected_ll[..., None])
    expected_ll[:, 1] = joint[:, 1, 2]
    expected_ll[:, 4] = joint[:, 4, 0]
    expected[:, 1] = [0, 0, 1]
    expected[:, 4] = [1, 0, 0]
    ll = normalise_joint(joint, gold)
    np.testing.assert_allclose(ll, expected_ll, rtol=1e-12)
    np.testing.assert_allclose(joint, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("threads", [1, 3])
def test_label_posterior_draws_equal_joint_then_normalise(
    k: int, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fused, threaded kernel the summaries use gives what the two-step path gives, on
    gold items, repeated rows, an item whose joint is -inf and samples split over threads."""
    monkeypatch.setattr(fast_draws, "_LABEL_THREADS", threads)
    data, _ = random_rows(3, n_items=25, n_annotators=6, k=k)
    rng = np.random.default_rng(k)
    n_samples = 130  # more than 64 per thread with 1 thread, two parts of 65 with 3
    log_prevalence = np.log(rng.dirichlet(np.ones(k), size=n_samples))
    log_confusion = np.log(rng.dirichlet(np.ones(k), size=(n_samples, data.n_annotators, k)))
    first_annotator = data.compressed.annotator_index[data.compressed.item_starts[0]]
    log_confusion[7, first_annotator] = -np.inf  # item 0 impossible in sample 7
    gold = np.full(data.n_items, -1)
    gold[[2, 5]] = [0, k - 1]
    joint = label_joint_draws(log_prevalence, log_confusion, data.compressed)
    want_ll = normalise_joint(joint, gold)
    probs, ll = label_posterior_draws(log_prevalence, log_confusion, data.compressed, gold)
    assert np.isneginf(ll[7, 0]) and np.allclose(probs[7, 0], 1 / k)
    np.testing.assert_allclose(probs, joint, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ll, want_ll, rtol=1e-12)
    assert probs[:, 5, k - 1].tolist() == [1.0] * n_samples


def test_label_posterior_draws_refuse_mismatched_categories() -> None:
    data, _ = random_rows(0, n_items=5, n_annotators=3, k=3)
    with pytest.raises(ValueError, match="wrong number of categories"):
        label_posterior_draws(
            np.log(np.full((2, 3), 1 / 3)),
            np.log(np.full((2, data.n_annotators, 3, 2), 0.5)),
            data.compressed,
            np.full(data.n_items, -1),
        )


def test_normalise_joint_refuses_non_contiguous() -> None:
    with pytest.raises(ValueError, match="C-contiguous float64"):
        normalise_joint(np.zeros((2, 3, 2)).transpose(0, 2, 1), np.full(2, -1))
