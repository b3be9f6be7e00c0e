"""Speed and memory of crowdbayes' NUTS against hand-written NumPyro and crowd-kit EM.

For each size (labels; items = labels / 5, 5 labels per item, K = 3, annotators 20 / 50 / 200 /
500) the script simulates Dawid-Skene data once (seeded), then runs every engine **in its own
subprocess** (so peak memory and compilation are measured cleanly) on the same data, one after
the other, in this one command:

- ``crowdbayes``: ``DawidSkene().fit`` / ``HierarchicalDawidSkene().fit`` with the given sampler
  (default nutpie); setup (EM + model build + compilation), sampling and summary (label
  posteriors) seconds come from the fit's provenance;
- ``numpyro``: the same models hand-written in NumPyro (``benchmarks/numpyro_models.py``),
  started at the same EM point; setup = JAX's own tracing and XLA
  compilation time (``jax.monitoring`` events), sampling = the run minus that; NumPyro's
  default target acceptance rate 0.8 (``numpyro-0.65``: 0.65, crowdbayes' Dawid-Skene default,
  for a like-for-like comparison);
- ``crowdkit``: crowd-kit's ``DawidSkene`` EM (a point estimate: wall time only).

Reported per engine: setup s, sampling s, min bulk ESS over prevalence and confusion, ESS/s
with and without setup, max R-hat, divergences, leapfrog steps per draw, peak RSS, and the
largest difference of posterior means (prevalence, confusion) from crowdbayes'. A second table
gives the cost of one log-density gradient against the memory-bandwidth floor.

Usage::

    python benchmarks/speed.py                     # 2.5k and 25k labels (quick)
    python benchmarks/speed.py --sizes 2500,25000,250000,1000000 --out benchmarks/SPEED.md
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _bench  # noqa: E402

ANNOTATORS = {2_500: 20, 25_000: 50, 250_000: 200, 1_000_000: 500}
LABELS_PER_ITEM = 5
N_CATEGORIES = 3


# ----------------------------------------------------------------------------- data
def simulate(n_labels: int, seed: int) -> Any:
    """Dawid-Skene data of ``n_labels`` labels (items = labels / 5)."""
    from crowdbayes.simulate import simulate_dawid_skene

    n_annotators = ANNOTATORS.get(n_labels, max(20, n_labels // 2000))
    return simulate_dawid_skene(
        n_items=n_labels // LABELS_PER_ITEM,
        n_annotators=n_annotators,
        n_categories=N_CATEGORIES,
        labels_per_item=LABELS_PER_ITEM,
        random_seed=seed,
    )


def _peak_rss_mb() -> float:
    """This process's peak resident memory (MB).

    Read from ``VmHWM`` in /proc (the high-water mark of this process image): ``ru_maxrss``
    keeps the pre-exec peak of the forked driver, which holds the simulated data.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _ess_rhat(posterior: Any, names: list[str]) -> tuple[float, float]:
    import arviz_stats as azs

    ess = azs.ess(posterior[names], method="bulk")
    rhat = azs.rhat(posterior[names])
    min_ess = min(float(ess[n].min()) for n in names)
    max_rhat = max(float(rhat[n].max()) for n in names)
    return min_ess, max_rhat


# ----------------------------------------------------------------------------- workers
def worker_crowdbayes(args: argparse.Namespace, method: str = "nuts") -> dict[str, Any]:
    import warnings

    import crowdbayes as cb

    data = _load_data(args.data)
    estimator = cb.get_model(args.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = estimator.fit(data, method=method, **_bench.sampling_settings(args))
    dt = fit.datatree_
    attrs = dt.attrs
    posterior = dt["posterior"].to_dataset()
    accuracy = _accuracy(fit.labels_["label"].to_numpy(), data, args.data)
    out: dict[str, Any] = {
        "setup": float(attrs["setup_seconds"]),
        "sampling": float(attrs["sampling_seconds"]),
        "summary": float(attrs["summary_seconds"]),
        "accuracy": accuracy,
        "prevalence": posterior["prevalence"].mean(("chain", "draw")).to_numpy().tolist(),
        "confusion": posterior["confusion"].mean(("chain", "draw")).to_numpy().tolist(),
    }
    if method != "nuts":
        return out
    ess, rhat = _ess_rhat(posterior, ["prevalence", "confusion"])
    stats = dt["sample_stats"].to_dataset()
    return {
        **out,
        "ess": ess,
        "rhat": rhat,
        "divergences": int(stats["diverging"].sum()),
        "steps": float(stats["n_steps"].mean()),
        "permuted": len(fit.diagnostics_.permuted_chains),
    }


def _accuracy(labels: np.ndarray, data: Any, path: str) -> float:
    """Share of items whose estimated label equals the simulated truth (``*.truth.csv``)."""
    import pandas as pd

    truth = pd.read_csv(Path(path).with_suffix(".truth.csv")).set_index("item")["label"]
    return float(np.mean(np.asarray(labels) == truth.reindex(data.items).to_numpy()))


def _numpyro_setup(data: Any, model_name: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    import jax.numpy as jnp

    import crowdbayes as cb
    from benchmarks import numpyro_models as nm

    rows = data.compressed
    jrows = {
        "item": jnp.asarray(rows.item_index),
        "annotator": jnp.asarray(rows.annotator_index),
        "label": jnp.asarray(rows.label_index),
        "count": jnp.asarray(rows.count, dtype=jnp.float64),
        "n_items": int(data.n_items),
    }
    estimator = cb.get_model(model_name)
    priors = estimator.resolved_priors()
    start = estimator.start(data, priors)
    init = {k: np.asarray(v) for k, v in start.initial_values.items()}
    if model_name == "dawid-skene":
        kwargs = {
            "rows": jrows,
            "alpha": priors.prevalence_concentration(data.n_categories),
            "beta": priors.confusion_concentration(data.n_annotators, data.n_categories),
        }
        return nm.dawid_skene, kwargs, init
    kwargs = {
        "rows": jrows,
        "n_annotators": data.n_annotators,
        "n_categories": data.n_categories,
        "mean_location": priors.mean_location(data.n_categories),
        "mean_scale": priors.error_mean_sd,  # the NumPyro model's own argument names
        "annotator_scale": priors.error_scale,
        "prevalence_concentration": priors.prevalence,
    }
    return nm.hierarchical_dawid_skene, kwargs, init


def worker_numpyro(args: argparse.Namespace, target_accept: float = 0.8) -> dict[str, Any]:
    # One virtual XLA host device per chain, so chains run in parallel threads (pmap) over the
    # available cores: on 2 cores this is 4x faster than "vectorized", which steps all chains in
    # lockstep (every chain pays the longest trajectory), and it is what a NumPyro user runs.
    n_devices = args.chains if args.numpyro_chain_method == "parallel" else 1
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpyro
    import xarray as xr
    from numpyro.infer import MCMC, NUTS, init_to_value

    data = _load_data(args.data)
    model, kwargs, init = _numpyro_setup(data, args.model)
    chain_method = args.numpyro_chain_method

    def run(warmup: int, samples: int) -> tuple[Any, float]:
        kernel = NUTS(
            model, init_strategy=init_to_value(values=init), target_accept_prob=target_accept
        )
        mcmc = MCMC(
            kernel,
            num_warmup=warmup,
            num_samples=samples,
            num_chains=args.chains,
            chain_method=chain_method,
            progress_bar=False,
        )
        start = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(args.seed), extra_fields=("num_steps", "diverging"), **kwargs)
        jax.block_until_ready(mcmc.get_samples())
        return mcmc, time.perf_counter() - start

    numpyro.set_host_device_count(n_devices)
    compile_seconds: list[float] = []

    def on_event(event: str, duration: float, **kwargs: Any) -> None:
        if event.endswith(("backend_compile_duration", "jaxpr_trace_duration")):
            compile_seconds.append(duration)

    jax.monitoring.register_event_duration_secs_listener(on_event)
    mcmc, total = run(args.tune, args.draws)
    setup = float(sum(compile_seconds))
    sampling = max(total - setup, 1e-9)
    samples = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    posterior = xr.Dataset(
        {
            "prevalence": (("chain", "draw", "category"), np.asarray(samples["prevalence"])),
            "confusion": (
                ("chain", "draw", "annotator", "true_category", "category"),
                np.asarray(samples["confusion"]),
            ),
        }
    )
    ess, rhat = _ess_rhat(posterior, ["prevalence", "confusion"])
    return {
        "setup": setup,
        "sampling": sampling,
        "summary": float("nan"),
        "ess": ess,
        "rhat": rhat,
        "divergences": int(np.asarray(extra["diverging"]).sum()),
        "steps": float(np.asarray(extra["num_steps"]).mean()),
        "permuted": 0,
        "prevalence": posterior["prevalence"].mean(("chain", "draw")).to_numpy().tolist(),
        "confusion": posterior["confusion"].mean(("chain", "draw")).to_numpy().tolist(),
        "chain_method": chain_method,
    }


def worker_crowdkit(args: argparse.Namespace) -> dict[str, Any]:
    from crowdkit.aggregation import DawidSkene

    data = _load_data(args.data)
    frame = _crowdkit_frame(data)
    start = time.perf_counter()
    proba = DawidSkene(n_iter=100).fit_predict_proba(frame)
    seconds = time.perf_counter() - start
    labels = np.asarray(proba.columns)[proba.to_numpy().argmax(axis=1)]
    predicted = np.full(data.n_items, -1)
    predicted[proba.index.to_numpy().astype(int)] = labels
    return {
        "setup": 0.0,
        "sampling": seconds,
        "accuracy": _accuracy(np.asarray(data.categories)[predicted], data, args.data),
    }


def worker_gradient(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per log-density gradient: PyTensor (numba) and the NumPyro model (JAX)."""
    import crowdbayes as cb

    data = _load_data(args.data)
    model = cb.get_model(args.model).build_model(data)
    point = model.initial_point()
    logp_dlogp = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA", initial_point=point)
    logp_dlogp.set_extra_values({})
    x = np.concatenate([np.ravel(point[v.name]) for v in model.value_vars])
    logp_dlogp(x)
    out = {"pytensor": _time_calls(lambda: logp_dlogp(x))}
    try:
        os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
        import jax

        jax.config.update("jax_enable_x64", True)
        from numpyro.infer.util import initialize_model

        numpyro_model, kwargs, init = _numpyro_setup(data, args.model)
        info, potential, _, _ = initialize_model(
            jax.random.PRNGKey(0), numpyro_model, model_kwargs=kwargs
        )
        grad = jax.jit(jax.value_and_grad(potential))
        params = info.z
        jax.block_until_ready(grad(params))
        out["numpyro"] = _time_calls(lambda: jax.block_until_ready(grad(params)))
    except ImportError:
        out["numpyro"] = float("nan")
    # Memory bandwidth: copy a 256 MB array.
    src = np.ones(32_000_000)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    copy = _time_calls(lambda: np.copyto(dst, src), min_seconds=0.5)
    out["bandwidth"] = 2 * src.nbytes / copy  # bytes read + written per second
    out["floor"] = data.n_annotations * data.n_categories * 8 / out["bandwidth"]
    return out


def _time_calls(fn: Any, min_seconds: float = 1.0) -> float:
    n, elapsed = 0, 0.0
    start = time.perf_counter()
    while elapsed < min_seconds or n < 5:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
    return elapsed / n


def _crowdkit_frame(data: Any) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {"task": data.item_index, "worker": data.annotator_index, "label": data.label_index}
    )


def _load_data(path: str) -> Any:
    import pandas as pd

    from crowdbayes.data import encode_annotations

    frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    return encode_annotations(frame, categories=list(range(N_CATEGORIES)))


WORKERS = {
    "crowdbayes": worker_crowdbayes,
    "crowdbayes-vi": lambda args: worker_crowdbayes(args, method="vi"),
    "crowdbayes-map": lambda args: worker_crowdbayes(args, method="map"),
    "numpyro": worker_numpyro,
    # like for like with crowdbayes' Dawid-Skene default (``default_target_accept``)
    "numpyro-0.65": lambda args: worker_numpyro(args, target_accept=0.65),
    "crowdkit": worker_crowdkit,
    "gradient": worker_gradient,
}


# ----------------------------------------------------------------------------- driver
def run_worker(engine: str, data_path: Path, args: argparse.Namespace, model: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        engine,
        "--model",
        model,
        "--data",
        str(data_path),
        "--json",
        str(out),
        "--draws",
        str(args.draws),
        "--tune",
        str(args.tune),
        "--chains",
        str(args.chains),
        "--seed",
        str(args.seed),
        "--sampler",
        args.sampler,
        "--numpyro-chain-method",
        args.numpyro_chain_method,
    ]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail), "wall": wall}
    result = json.loads(out.read_text())
    out.unlink()
    result["wall"] = wall
    return result


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return ""
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2500,25000")
    parser.add_argument("--models", default="dawid-skene,hierarchical-dawid-skene")
    parser.add_argument("--engines", default="crowdbayes,numpyro,crowdkit")
    _bench.add_sampling_options(parser)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument(
        "--numpyro-chain-method",
        default="parallel",
        choices=["parallel", "vectorized", "sequential"],
        help="NumPyro's chain_method (parallel: one virtual host device per chain)",
    )
    parser.add_argument("--out", default=None, help="markdown file to write")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="dawid-skene", help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = WORKERS[args.worker](args)
        result["peak_rss_mb"] = _peak_rss_mb()
        Path(args.json).write_text(json.dumps(result))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    models = args.models.split(",")
    engines = args.engines.split(",")
    rows: list[str] = []
    grad_rows: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="crowdbayes-speed-"))
    for size in sizes:
        sim = simulate(size, args.seed)
        path = workdir / f"labels_{size}.csv"
        sim.annotations.to_csv(path, index=False)
        sim.true_labels.rename("label").reset_index().to_csv(
            path.with_suffix(".truth.csv"), index=False
        )
        for model in models:
            results: dict[str, dict] = {}
            for engine in engines:
                dawid_skene_only = ("crowdkit", "crowdbayes-map", "numpyro-0.65")
                if engine in dawid_skene_only and model != "dawid-skene":
                    continue
                res = run_worker(engine, path, args, model)
                results[engine] = res
                print(f"{size} {model} {engine}: {json.dumps(_short(res))}", flush=True)
            ref = results.get("crowdbayes", {})
            for engine, res in results.items():
                rows.append(_row(size, model, engine, res, ref, args))
        grad = run_worker("gradient", path, args, "dawid-skene")
        print(f"{size} gradient: {json.dumps(grad)}", flush=True)
        if "error" not in grad:
            grad_rows.append(
                f"| {size:,} | {grad['pytensor'] * 1e3:.3f} | {_fmt(grad['numpyro'] * 1e3, 3)} "
                f"| {grad['floor'] * 1e3:.3f} | {grad['pytensor'] / grad['floor']:.0f}x "
                f"| {grad['bandwidth'] / 1e9:.1f} |"
            )
    text = _report(rows, grad_rows, args)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def _rate(x: float | None) -> str:
    """ESS per second with two significant digits below 100."""
    if x is None or not np.isfinite(x):
        return ""
    return _fmt(x, 0) if x >= 100 else _fmt(x, 1 if x >= 10 else 2)


def _short(res: dict) -> dict:
    return {k: v for k, v in res.items() if k not in ("prevalence", "confusion")}


def _row(size: int, model: str, engine: str, res: dict, ref: dict, args: argparse.Namespace) -> str:
    import crowdbayes as cb

    target = cb.get_model(model).default_target_accept
    label = {
        "crowdbayes": f"crowdbayes NUTS ({args.sampler}, target accept {target})",
        "crowdbayes-vi": "crowdbayes ADVI (method='vi')",
        "crowdbayes-map": "crowdbayes MAP (method='map')",
        "numpyro": "NumPyro NUTS, hand-written (target accept 0.8)",
        "numpyro-0.65": "NumPyro NUTS, hand-written (target accept 0.65)",
    }
    name = label.get(engine, "crowd-kit EM (point estimate)")
    if "error" in res:
        return f"| {size:,} | {model} | {name} | failed: {res['error'][:120]} |" + " |" * 13
    setup, sampling = res["setup"], res["sampling"]
    ess = res.get("ess")
    per_s = ess / sampling if ess else None
    per_s_all = ess / (setup + sampling) if ess else None
    diff = None
    if res.get("prevalence") and ref.get("prevalence") and engine != "crowdbayes":
        diff = max(
            float(np.max(np.abs(np.subtract(res[k], ref[k])))) for k in ("prevalence", "confusion")
        )
    total = setup + sampling + (res.get("summary") or 0.0)
    if not np.isfinite(total):
        total = setup + sampling
    return (
        f"| {size:,} | {model} | {name} | {setup:.1f} | {sampling:.1f} | {_fmt(res.get('summary'))}"
        f" | {total:.1f} | {_fmt(res.get('accuracy'), 4)}"
        f" | {_fmt(ess, 0)} | {_rate(per_s)} | {_rate(per_s_all)} | {_fmt(res.get('rhat'), 3)}"
        f" | {_fmt(res.get('divergences'))} | {_fmt(res.get('steps'))}"
        f" | {res['peak_rss_mb']:,.0f} | {_fmt(diff, 3)} |"
    )


def _report(rows: list[str], grad_rows: list[str], args: argparse.Namespace) -> str:
    head = (
        "| labels | model | engine | setup s | sampling s | summary s | total s | accuracy "
        "| min bulk ESS | ESS/s | ESS/s incl. setup | max R-hat | divergences | leapfrog / draw "
        "| peak MB | max abs diff of means vs crowdbayes NUTS |\n|" + "---|" * 16
    )
    ghead = (
        "| labels | crowdbayes gradient ms (numba) | NumPyro gradient ms (JAX) "
        "| bandwidth floor ms | crowdbayes / floor | copy bandwidth GB/s |\n|" + "---|" * 6
    )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        "## Speed: Dawid-Skene and hierarchical Dawid-Skene, K = 3, 5 labels per item\n\n"
        f"{args.chains} chains x ({args.tune} tune + {args.draws} draws), seed {args.seed}, "
        f"{cpus} CPU(s). ESS: minimum bulk ESS over prevalence and confusion. Each engine ran "
        "in its own subprocess, one after the other, in one command:\n\n"
        f"    python benchmarks/speed.py --sizes {args.sizes} --models {args.models} "
        f"--engines {args.engines} --draws {args.draws} --tune {args.tune} "
        f"--chains {args.chains} --seed {args.seed}\n\n"
        + head
        + "\n"
        + "\n".join(rows)
        + "\n\n### One log-density gradient (Dawid-Skene) against the memory-bandwidth floor\n\n"
        "Floor: labels x K float64 values touched once / measured copy bandwidth.\n\n"
        + ghead
        + "\n"
        + "\n".join(grad_rows)
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
