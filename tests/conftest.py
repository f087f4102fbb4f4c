"""Shared fixtures: the real datasets in ../shared/data, small subsets of them, a private cache."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WUKONG_DATA", ROOT.parent / "shared" / "data"))
CAT_DOG = DATA / "cat_dog"
# Tests of Wukong's mechanics use the fast 64px backbone; a few tests check the default end to end.
FAST_BACKBONE = "wukong_resnet18_s_tiny"


def pytest_configure(config: pytest.Config) -> None:
    if not DATA.is_dir():
        raise pytest.UsageError(f"{DATA}: the shared datasets are missing; set WUKONG_DATA to their folder")


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each test session gets its own cache (features, extracted archives): no state leaks in."""
    path = tmp_path_factory.mktemp("wukong-cache")
    os.environ["WUKONG_CACHE"] = str(path)
    return path


def cifar_subset(target: Path, *, train_per_class: int, test_per_class: int, train_offset: int = 0) -> Path:
    """Extract the first N images per class of CIFAR-10's train and test splits (one pass); with
    ``train_offset``, the train images after the first ``train_offset`` of each class (another sample)."""
    wanted = {"train": train_per_class, "test": test_per_class}
    counts: dict[tuple[str, str], int] = {}
    passed: dict[str, int] = {}
    with tarfile.open(DATA / "cifar10.tar.gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] not in wanted:
                continue
            key = (parts[0], parts[1])
            if counts.get(key, 0) >= wanted[parts[0]]:
                continue
            if parts[0] == "train" and passed.get(parts[1], 0) < train_offset:
                passed[parts[1]] = passed.get(parts[1], 0) + 1
                continue
            counts[key] = counts.get(key, 0) + 1
            out = target / member.name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())
            if len(counts) == 10 * sum(n > 0 for n in wanted.values()) and all(
                counts[k] >= wanted[k[0]] for k in counts
            ):
                break
    return target


@pytest.fixture(scope="session")
def cifar_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR-10, 20 labelled images per class for training and 30 per class for testing."""
    return cifar_subset(tmp_path_factory.mktemp("cifar"), train_per_class=20, test_per_class=30)


@pytest.fixture(scope="session")
def digit_scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's handwritten digit scans (real data, unlike photos): ``pool/<digit>/`` holds 10
    per digit, ``test/<digit>/`` 20 per digit (written by ``benchmarks/auto_tasks.py``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("auto_tasks", ROOT / "benchmarks" / "auto_tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks.digits(tmp_path_factory.mktemp("digits"), pool=10, test=20)


@pytest.fixture()
def cat_dog_copy(tmp_path: Path) -> Path:
    """A writable copy of the cat/dog training folder (tests add bad files to it)."""
    import shutil

    target = tmp_path / "cat_dog_train"
    shutil.copytree(CAT_DOG / "train", target)
    return target
