"""The cache: a size limit with least-recently-used eviction, ``wukong cache info|clear``, and two
processes sharing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CAT_DOG, FAST_BACKBONE
from wukong.cache import cache_root, parse_size
from wukong.errors import ParameterError
from wukong.features_cache import FeatureCache


def _rows(start: int, n: int, width: int = 256) -> np.ndarray:
    return np.arange(start * width, (start + n) * width, dtype=np.float32).reshape(n, width)


def test_features_stay_under_the_limit_least_recently_used_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_shard = 10 * 256 * 4  # ten rows of 256 float32
    monkeypatch.setenv("WUKONG_CACHE_LIMIT", str(int(3.5 * one_shard)))
    cache = FeatureCache({"backbone": "test"}, root=tmp_path)
    groups = [[f"g{g}-{i}" for i in range(10)] for g in range(3)]
    for g, hashes in enumerate(groups):
        cache.get_or_compute(hashes, lambda idx, g=g: _rows(10 * g, len(idx)))
        time.sleep(0.05)  # distinct modification times
    cache.get_or_compute(groups[0], lambda idx: pytest.fail("cached: not computed again"))  # used again: newest
    time.sleep(0.05)
    cache.get_or_compute([f"g3-{i}" for i in range(10)], lambda idx: _rows(30, len(idx)))  # over the limit
    shards = sorted(tmp_path.glob("*/shard-*.npz"))
    assert sum(p.stat().st_size for p in shards) <= 3.5 * one_shard
    fresh = FeatureCache({"backbone": "test"}, root=tmp_path)  # what is left, as another process sees it
    computed: list[list[int]] = []
    got = fresh.get_or_compute(groups[0] + groups[1], lambda idx: computed.append(idx) or _rows(10, len(idx)))
    assert computed == [list(range(10, 20))]  # group 1, the least recently used, went; group 0 stayed
    assert np.array_equal(got[:10], _rows(0, 10)) and np.array_equal(got[10:], _rows(10, 10))


def test_a_shard_removed_under_a_reader_is_computed_again(tmp_path: Path) -> None:
    cache = FeatureCache({"backbone": "test"}, root=tmp_path)
    cache.get_or_compute(["a", "b"], lambda idx: _rows(0, len(idx)))
    cache.get_or_compute(["c"], lambda idx: _rows(2, len(idx)))
    shard = next(p for p in tmp_path.glob("*/shard-*.npz") if b"a" in np.load(p)["keys"][0])
    shard.unlink()  # another process evicted it after this one had read the index
    computed: list[list[int]] = []
    got = cache.get_or_compute(["a", "c", "b"], lambda idx: computed.append(idx) or _rows(0, len(idx)))
    assert computed == [[0, 2]]
    assert np.array_equal(got[[0, 2]], _rows(0, 2)) and np.array_equal(got[1], _rows(2, 1)[0])


def test_limits_are_read_in_plain_units(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_size("20GB") == 20 * 10**9 and parse_size("500 mb") == 500 * 10**6 and parse_size("7") == 7
    monkeypatch.setenv("WUKONG_CACHE_LIMIT", "lots")
    from wukong.cache import feature_limit

    with pytest.raises(ParameterError, match="WUKONG_CACHE_LIMIT='lots'"):
        feature_limit()


def _wukong(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WUKONG_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "wukong.cli", *args], capture_output=True, text=True, timeout=600, env=env
    )


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_two_trainings_share_one_cache_at_once_then_info_and_clear(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "WUKONG_CACHE": str(cache)}
    command = [sys.executable, "-m", "wukong.cli", "train", str(CAT_DOG / "train"), "--backbone", FAST_BACKBONE]
    runs = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / f"m{i}"), "--strategy", "features", "--json", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    first, second = (json.loads(out) for out, _ in outputs)
    assert first["val_accuracy"] == second["val_accuracy"]  # same seed, same cache: the same model
    predicted = [
        _wukong("predict", str(tmp_path / f"m{i}"), str(CAT_DOG / "test"), "--json", cache=cache) for i in (0, 1)
    ]
    assert predicted[0].returncode == 0 and predicted[0].stdout == predicted[1].stdout

    info = json.loads(_wukong("cache", "info", "--json", cache=cache).stdout)
    assert info["root"] == str(cache) and info["kinds"]["features"]["files"] > 0
    (cache / "models").mkdir(exist_ok=True)
    (cache / "models" / "kept.safetensors").write_bytes(b"x" * 10)
    (cache / "notes.txt").write_text("a user's own file under the cache root")
    cleared = _wukong("cache", "clear", "--json", cache=cache)
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["features"] == info["kinds"]["features"]["bytes"]
    after = json.loads(_wukong("cache", "info", "--json", cache=cache).stdout)["kinds"]
    assert after["features"]["files"] == 0 and after["models"]["files"] >= 1
    assert (cache / "notes.txt").exists()  # only Wukong's own folders are removed


def test_the_cache_root_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WUKONG_CACHE", str(tmp_path / "here"))
    assert cache_root() == tmp_path / "here"
    monkeypatch.delenv("WUKONG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "wukong"  # platformdirs, as before on Linux


def test_an_archive_extracted_by_two_processes_at_once_is_used_from_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second extraction finds the folder in place when it renames its own: it uses that one."""
    import tarfile

    import wukong.data.archive as archive_module

    source = tmp_path / "src" / "shapes" / "round"
    source.mkdir(parents=True)
    (source / "a.txt").write_text("a")
    packed = tmp_path / "shapes.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(tmp_path / "src" / "shapes", arcname="shapes")
    monkeypatch.setenv("WUKONG_CACHE", str(tmp_path / "cache"))
    real_replace = os.replace

    def other_process_first(src: Path, dst: Path) -> None:
        Path(dst).mkdir(parents=True, exist_ok=True)
        (Path(dst) / "shapes" / "round").mkdir(parents=True)
        (Path(dst) / "shapes" / "round" / "a.txt").write_text("a")
        real_replace(src, dst)  # a non-empty folder is in the way: the rename fails as it would

    monkeypatch.setattr(archive_module.os, "replace", other_process_first)
    root = archive_module.extract_cached(packed)
    assert (root / "round" / "a.txt").read_text() == "a"
    assert [p.name for p in root.parent.parent.iterdir()] == [root.parent.name]  # no temporary left


EXTRACT = """
import sys, time
import wukong.features_cache as features_cache
features_cache.CHUNK = 40
from wukong import ImageClassifier
from wukong.modalities.image import FrozenPasses

computed = []
embed = FrozenPasses.embed

def counting(self, net, backbone, pixels, *, mirrored=False):
    computed.append(len(pixels))
    if sys.argv[2] == "slow":
        time.sleep(1.0)
    return embed(self, net, backbone, pixels, mirrored=mirrored)

FrozenPasses.embed = counting
labelled, _, features = ImageClassifier(sys.argv[3], progress=False)._embedded(sys.argv[1], None, None, "training")
print(sum(computed), len(features), type(labelled.examples.pixels).__name__)
"""


@pytest.mark.slow  # the default suite stays near 10 minutes; make test-all runs it
def test_a_killed_feature_extraction_resumes_without_recomputing(cifar_small: Path, tmp_path: Path) -> None:
    """Features are stored a chunk at a time as they are computed: killed (SIGKILL) after some
    chunks, the extraction run again computes only the images it had not finished. The images are
    streamed (read from their files by loader workers), as they are when there are many."""
    cache = tmp_path / "cache"
    script = tmp_path / "extract.py"
    script.write_text(EXTRACT)
    env = {**os.environ, "WUKONG_CACHE": str(cache), "WUKONG_DECODED_LIMIT": "1"}
    command = [sys.executable, str(script), str(cifar_small / "train")]
    run = subprocess.Popen([*command, "slow", FAST_BACKBONE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not list(cache.glob("features/*/shard-*.npz")) and time.time() < deadline and run.poll() is None:
        time.sleep(0.1)
    run.kill()
    run.communicate()
    assert run.returncode != 0  # killed before it finished: 200 images take 5 chunks of a second or more
    stored = sum(len(np.load(p)["keys"]) for p in cache.glob("features/*/shard-*.npz"))
    assert 0 < stored < 200
    again = subprocess.run([*command, "fast", FAST_BACKBONE], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    computed, total, pixels = again.stdout.split()
    assert int(total) == 200 and int(computed) == 200 - stored and pixels == "StreamedPixels"


def test_one_pass_over_every_stage_serves_the_search_the_kept_tap_a_refit_and_the_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``features`` searches on one pass over every stage of the network; the kept tap's scores of
    known inputs, a fit that keeps the search's choices (``chosen_params``; ``retraining``, started
    from the fitted classifier) and the audit's top features are read from that pass's cache instead
    of being computed again."""
    from wukong import ImageClassifier

    monkeypatch.setenv("WUKONG_CACHE", str(tmp_path / "cache"))
    namespaces = lambda: [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("features/*/namespace.json")]  # noqa: E731
    rows = lambda: sum(len(np.load(p)["keys"]) for p in (tmp_path / "cache").glob("features/*/shard-*.npz"))  # noqa: E731
    first = ImageClassifier(FAST_BACKBONE, strategy="features", progress=False).fit(CAT_DOG / "train")
    taps = {json.dumps(n["tap"]) for n in namespaces()}
    assert taps == {"[null, 4, 3, 2, 1, 0]", '"pixels16"', '"pixels32"'}, taps  # the kept tap has none of its own
    stored = rows()

    def no_decoding(*args: object) -> None:
        raise AssertionError("an image was decoded")

    with monkeypatch.context() as patch:  # every image known to decode, every feature cached: none is decoded
        patch.setattr("wukong.data.decode.decode_square", no_decoding)
        again = ImageClassifier(**first.chosen_params()).fit(CAT_DOG / "train")
    assert again.metrics_["mirror_images"] is None  # chosen already: not compared again
    first._embedded(CAT_DOG / "train", None, None, "training")
    assert rows() == stored and again.tap_ == first.tap_
    np.testing.assert_allclose(again.predict_proba(CAT_DOG / "test"), first.predict_proba(CAT_DOG / "test"), atol=2e-3)
    # what ``wukong train --like`` fits: a copy of the model whose classifier starts from the fitted one
    before = first.predict_proba(CAT_DOG / "test")
    warm = first.retraining(progress=False).fit(CAT_DOG / "train")
    assert warm is not first and warm.warm_start and warm.tap_ == first.tap_ and rows() == stored
    np.testing.assert_allclose(warm.predict_proba(CAT_DOG / "test"), again.predict_proba(CAT_DOG / "test"), atol=2e-3)
    np.testing.assert_array_equal(first.predict_proba(CAT_DOG / "test"), before)  # left as it was
    renamed = tmp_path / "renamed"  # other classes, one more: the data's, not the model's (nothing to start from)
    renamed.mkdir()
    for name, folder in (("kitty", "train/cat"), ("dog", "train/dog"), ("kitten", "test/cat")):
        (renamed / name).symlink_to(CAT_DOG / folder)
    kitty = first.retraining(progress=False).fit(renamed)
    assert kitty.classes_ == ["dog", "kitten", "kitty"]
    assert kitty.predict(sorted((CAT_DOG / "train" / "dog").glob("*.jpg"))[:10]).count("dog") >= 8
    first.metrics_["classifier"]["C"] = [0.1, 1.0]  # as a blend records its members' values: each tried again
    assert first.chosen_params()["tuning"] == {"c_grid": [0.1, 1.0]}


def test_only_images_known_to_decode_are_left_undecoded(
    cat_dog_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A labelled read that may leave images undecoded (``lazy``, where a fit reads cached
    features) does so only where every file's content is recorded as decoding without a problem:
    the first read decodes and records them; a changed file is decoded and checked again."""
    from wukong.backbones.vision import load_image_backbone
    from wukong.data.streamed import StreamedPixels
    from wukong.modalities.image import read_labelled

    monkeypatch.setenv("WUKONG_CACHE", str(tmp_path / "cache"))
    backbone = load_image_backbone(FAST_BACKBONE)

    def read(lazy: bool = True) -> tuple:
        return read_labelled(cat_dog_copy, None, None, backbone, progress=False, role="training", lazy=lazy)

    first, _ = read()
    assert isinstance(first.examples.pixels, np.ndarray)  # nothing recorded yet: decoded and checked
    again, skipped = read()
    assert isinstance(again.examples.pixels, StreamedPixels) and not skipped
    assert again.examples.hashes == first.examples.hashes and again.examples.paths == first.examples.paths
    np.testing.assert_array_equal(again.examples.pixels[[0, 5]], first.examples.pixels[[0, 5]])  # when asked for
    assert isinstance(read(lazy=False)[0].examples.pixels, np.ndarray)  # not asked to: decoded as before
    broken = sorted((cat_dog_copy / "cat").glob("*.jpg"))[0]
    broken.write_bytes(broken.read_bytes()[:300])  # truncated: its content is new
    third, skipped = read()
    assert isinstance(third.examples.pixels, np.ndarray) and len(third.examples) == len(first.examples) - 1
    assert [s["path"] for s in skipped] == [str(broken)]


def test_the_record_of_images_known_to_decode_is_merged_bounded_and_never_trusted_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wukong.data import known

    monkeypatch.setattr(known, "MERGE_AT", 3)
    monkeypatch.setattr(known, "MAX_KNOWN", 10)
    shards = lambda: list((tmp_path / "256-bicubic").glob("shard-*.npy"))  # noqa: E731
    hashes = lambda *ids: [f"{i:032d}" for i in ids]  # noqa: E731
    for i in range(4):
        known.remember_decodable(hashes(i, i + 100), 256, "bicubic", root=tmp_path)
    assert len(shards()) == 1  # the fourth write merged the three before it
    assert known.all_decodable(hashes(0, 1, 2, 3, 103), 256, "bicubic", root=tmp_path)
    assert not known.all_decodable(hashes(0, 4), 256, "bicubic", root=tmp_path)
    assert not known.all_decodable(hashes(0), 224, "bicubic", root=tmp_path)  # another decoding: its own record
    known.remember_decodable(hashes(*range(200, 205)), 256, "bicubic", root=tmp_path)  # 8 + 5 > 10: started again
    assert not known.all_decodable(hashes(0), 256, "bicubic", root=tmp_path)
    assert known.all_decodable(hashes(200, 204), 256, "bicubic", root=tmp_path) and len(shards()) == 1
    shards()[0].write_bytes(b"not an array")  # unreadable: nothing is taken as known
    assert not known.all_decodable(hashes(200), 256, "bicubic", root=tmp_path)
