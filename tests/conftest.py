"""Shared fixtures: seeded generators, small simulated data, the toy datasets, the real datasets
(when present)."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _helpers import TOYS, toy_two

import crowdbayes as cb
from crowdbayes.data import AnnotationData, encode_annotations
from crowdbayes.datasets import load_dataset

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def load_real(name: str) -> tuple[pd.DataFrame, pd.Series | None]:
    """Annotations and gold (or None) of a real dataset, skipping when it is absent."""
    try:
        return load_dataset(name)
    except ValueError as err:
        pytest.skip(str(err))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261129)


@pytest.fixture(scope="session")
def small_sim() -> cb.Simulation:
    """300 items, 12 annotators, 3 categories, 5 labels per item."""
    return cb.simulate_dawid_skene(n_items=300, n_annotators=12, n_categories=3, random_seed=7)


@pytest.fixture
def toy_frame() -> pd.DataFrame:
    """Five items, three annotators, two categories, with one repeated label."""
    frame, _ = toy_two()
    return frame


@pytest.fixture(params=list(TOYS), scope="module")
def toy(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, dict[Any, Any], AnnotationData]:
    """Each toy dataset of ``_helpers.TOYS`` (gold for one item, one label given twice):
    annotations, gold and their encoding."""
    frame, gold = TOYS[request.param]()
    assert frame.duplicated().sum() == 1  # one annotator gives the same label twice
    return frame, gold, encode_annotations(frame, gold=gold)
