"""The vectorised R-hat and ESS equal ArviZ's, parameter by parameter."""

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from crowdbayes import diagnostics
from crowdbayes.diagnostics import compute_diagnostics, convergence_statistics


def _ar1(rng: np.random.Generator, shape: tuple[int, int, int], phi: float) -> np.ndarray:
    x = np.zeros(shape)
    noise = rng.normal(size=shape)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def _cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(4, 300, 6))
    mixed[:, :, 0] = 2.5  # constant
    mixed[:, :, 1] = rng.integers(0, 2, size=(4, 300))  # two values: heavy ties
    mixed[2, :, 2] += 3.0  # one chain elsewhere: R-hat far above 1
    return {
        "independent": rng.normal(size=(4, 1000, 12)),
        "autocorrelated": _ar1(rng, (4, 1000, 8), 0.9),
        "nearly stuck": _ar1(rng, (4, 300, 5), 0.995),
        "antithetic": _ar1(rng, (4, 1000, 5), -0.7),
        "odd draws": rng.normal(size=(3, 501, 4)),
        "few draws": _ar1(rng, (2, 9, 20), 0.5),
        "fewest draws": rng.normal(size=(2, 4, 20)),
        "discrete": rng.integers(0, 3, size=(4, 200, 6)).astype(float),
        "heavy tails": rng.standard_cauchy(size=(4, 400, 6)),
        "mixed": mixed,
        "one chain": _ar1(rng, (1, 500, 4), 0.6),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_convergence_statistics_equal_arviz(case: str) -> None:
    draws = _cases()[case]
    da = xr.DataArray(draws, dims=("chain", "draw", "parameter"))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # ArviZ's 0 / 0 on the constant
        expected = [
            az.rhat(da).to_numpy(),
            az.ess(da, method="bulk").to_numpy(),
            az.ess(da, method="tail").to_numpy(),
        ]
    for name, got, want in zip(
        ("rhat", "bulk", "tail"), convergence_statistics(draws), expected, strict=True
    ):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=0, err_msg=name)


def test_cases_reach_every_branch() -> None:
    # the equality above means something only if the cases cover ties, constants, large R-hat,
    # a stopped positive sequence with a negative pair and short chains
    cases = _cases()
    rhat, _, _ = convergence_statistics(cases["mixed"])
    assert rhat[2] > 1.3
    _, bulk, _ = convergence_statistics(cases["antithetic"])
    assert np.all(bulk > 4000)  # antithetic chains: ESS above the number of draws
    _, bulk, _ = convergence_statistics(cases["nearly stuck"])
    assert np.all(bulk < 100)
    rhat, bulk, tail = convergence_statistics(cases["one chain"])
    assert np.isnan(rhat).all() and np.isfinite(bulk).all() and np.isfinite(tail).all()


@pytest.mark.parametrize("n_chains", [4, 1])
def test_parameters_split_over_threads_give_the_same_statistics(
    n_chains: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the cases with this many chains side by side (one chain: R-hat is NaN), and a NaN draw
    cases = [c for c in _cases().values() if c.shape[0] == n_chains]
    n_draws = min(c.shape[1] for c in cases)
    draws = np.concatenate([c[:, :n_draws] for c in cases], axis=2)
    draws[0, 1, 2] = np.nan
    single = convergence_statistics(draws)
    monkeypatch.setattr(diagnostics, "_THREADS", 3)
    monkeypatch.setattr(diagnostics, "_PARAMETERS_PER_THREAD", 1)
    threaded = convergence_statistics(draws)
    for got, want in zip(threaded, single, strict=True):
        np.testing.assert_array_equal(got, want)
    assert np.isnan(single[1][2]) and np.isfinite(single[1][3])


def test_non_finite_draws_use_arviz() -> None:
    draws = np.random.default_rng(1).normal(size=(2, 50, 3))
    draws[0, 3, 1] = np.nan
    rhat, bulk, tail = convergence_statistics(draws)
    assert np.isnan(bulk[1]) and np.isfinite(bulk[[0, 2]]).all()


def test_fewer_than_four_draws_give_nan() -> None:
    rhat, bulk, tail = convergence_statistics(np.zeros((2, 3, 2)))
    assert np.isnan(rhat).all() and np.isnan(bulk).all() and np.isnan(tail).all()


def test_compute_diagnostics_reports_the_worst_parameter() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=(4, 400, 3))
    values[3, :, 1] += 2.0
    posterior = xr.Dataset(
        {"x": (("chain", "draw", "item"), values)}, coords={"item": ["a", "b", "c"]}
    )
    diag = compute_diagnostics(posterior, None, ["x"])
    assert diag.worst_parameter == "x[b]"
    assert diag.max_rhat > 1.2
    assert any("R-hat" in m for m in diag.messages)


def test_precomputed_statistics_give_the_same_diagnostics() -> None:
    """The estimators compute R-hat and ESS while they summarise labels, then pass them in."""
    from crowdbayes.diagnostics import variable_statistics

    rng = np.random.default_rng(3)
    values = rng.normal(size=(4, 300, 2, 3))
    values[2, :, 1, 0] += 1.5
    values[:, :, 0, 2] = 0.25  # a constant element: no R-hat
    posterior = xr.Dataset(
        {
            "x": (("chain", "draw", "a", "b"), values),
            "y": (("chain", "draw"), rng.normal(size=(4, 300))),
        },
        coords={"a": ["p", "q"], "b": [10, 20, 30]},
    )
    statistics = variable_statistics(posterior, ["x", "y"])
    assert statistics["x"][0].shape == (2, 3) and not statistics["x"][0][0, 2]
    assert len(statistics["x"][1]) == 5
    want = compute_diagnostics(posterior, None, ["x", "y"])
    got = compute_diagnostics(posterior, None, ["x", "y"], statistics=statistics)
    assert got.to_dict() == want.to_dict()
    assert got.worst_parameter == "x[q, 10]"


def test_two_category_simplex_statistics_come_from_one_entry() -> None:
    """A two-category simplex's second entry is one minus its first: its statistics are the
    first's, computed once, and equal to computing them directly."""
    from crowdbayes.diagnostics import variable_statistics

    rng = np.random.default_rng(7)
    walk = rng.normal(size=(4, 400, 3)).cumsum(axis=1) * 0.05 + rng.normal(size=(4, 400, 3))
    first = 1.0 / (1.0 + np.exp(-walk))
    first[2, :, 1] += 0.02  # one chain off for one row: R-hat well above 1
    first[:, :, 2] = 0.25  # a constant row
    pairs = np.stack([first, 1.0 - first], axis=-1)  # (chain, draw, row, 2)
    posterior = xr.Dataset({"p": (("chain", "draw", "row", "category"), pairs)})
    varying, rhat, bulk, tail = variable_statistics(posterior, ["p"])["p"]
    assert varying.tolist() == [[True, True], [True, True], [False, False]]
    want = convergence_statistics(pairs.reshape(4, 400, -1)[:, :, varying.ravel()])
    for got, expected in zip((rhat, bulk, tail), want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert rhat[2] > 1.01 and rhat[2] == rhat[3]
    # entries that do not sum to one are computed one by one
    posterior["p"][0, 0, 0, 1] = 0.5
    _, rhat2, *_ = variable_statistics(posterior, ["p"])["p"]
    assert rhat2[0] == pytest.approx(rhat[0]) and rhat2[1] != rhat[1]
