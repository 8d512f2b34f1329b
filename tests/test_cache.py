import json
import os
import pickle

import numpy as np

from bloodcli.features import build_extractors
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.io.datasets import load_dataset
from bloodcli.pipeline.cache import FeatureCache
from bloodcli.pipeline.runner import extract_features


def _extract(dataset, cache, spec="glcm,shape,color", options=None, preprocessing=Preprocessing(), jobs=1):
    return extract_features(dataset, build_extractors(spec, options), preprocessing, cache=cache, jobs=jobs)


def test_second_run_computes_nothing_and_gives_identical_features(tmp_path, small_dataset):
    dataset, cache = load_dataset(small_dataset), FeatureCache(tmp_path / "c")
    first = _extract(dataset, cache)
    assert (first.n_computed, first.n_cached) == (36, 0)
    second = _extract(dataset, cache, jobs=2)
    assert (second.n_computed, second.n_cached) == (0, 36)
    np.testing.assert_array_equal(first.values, second.values)


def test_changing_one_option_recomputes_the_set_and_keeps_the_earlier_entries(tmp_path, small_dataset):
    dataset, cache = load_dataset(small_dataset), FeatureCache(tmp_path / "c")
    original = _extract(dataset, cache)
    changed = _extract(dataset, cache, options=["glcm.levels=16"])
    assert (changed.n_computed, changed.n_cached) == (36, 0)
    assert not np.array_equal(changed.values, original.values)
    preprocessed = _extract(dataset, cache, preprocessing=Preprocessing(resize=128))
    assert preprocessed.n_computed == 36
    back = _extract(dataset, cache)
    assert back.n_computed == 0
    np.testing.assert_array_equal(back.values, original.values)


def test_one_cache_file_per_image_holds_every_extractor_of_the_run(tmp_path, small_dataset):
    dataset, cache = load_dataset(small_dataset), FeatureCache(tmp_path / "c")
    table = _extract(dataset, cache)
    assert len(list((tmp_path / "c").rglob("*.feat"))) == len(dataset) == 12
    assert [name.split("-")[0] for name in cache.stats()] == ["glcm+shape+color"]
    entry = next((tmp_path / "c").rglob("*.feat"))
    entry.write_bytes(entry.read_bytes()[:-4])  # shorter than the run's features: damaged, recomputed
    again = _extract(dataset, cache)
    assert again.n_computed == 3
    np.testing.assert_array_equal(again.values, table.values)


def test_cache_key_is_content_not_path(tmp_path, small_dataset):
    cache = FeatureCache(tmp_path / "c")
    _extract(load_dataset(small_dataset), cache)
    moved = small_dataset.rename(tmp_path / "moved")
    assert _extract(load_dataset(moved), cache).n_computed == 0


def test_damaged_entry_is_detected_and_recomputed(tmp_path, small_dataset):
    dataset, cache = load_dataset(small_dataset), FeatureCache(tmp_path / "c")
    reference = _extract(dataset, cache, spec="glcm")
    entries = sorted((tmp_path / "c").rglob("*.feat"))
    entries[0].write_bytes(entries[0].read_bytes()[:20])  # truncated
    data = bytearray(entries[1].read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # the last value silently altered (to +inf): checksum mismatch
    entries[1].write_bytes(bytes(data))
    again = _extract(dataset, cache, spec="glcm")
    assert again.n_computed == 2  # two images, one extractor
    np.testing.assert_array_equal(again.values, reference.values)


def test_disabled_cache_writes_nothing(tmp_path, small_dataset):
    table = _extract(load_dataset(small_dataset), FeatureCache(None), spec="color")
    assert table.n_computed == 12 and not (tmp_path / "c").exists()


def test_stats_and_clean(tmp_path, small_dataset):
    cache = FeatureCache(tmp_path / "c")
    for spec in ("glcm,shape,color", "color", "shape"):
        _extract(load_dataset(small_dataset), cache, spec=spec)
    stats = cache.stats()
    assert sorted(name.split("-")[0] for name in stats) == ["color", "glcm+shape+color", "shape"]
    assert all(v["entries"] == 12 for v in stats.values())
    assert cache.clean("glcm") == 12 and len(cache.stats()) == 2  # the sets holding glcm
    assert cache.clean() == 24 and cache.stats() == {}


class _RunsCode:
    """A pickle that runs a command when unpickled: what a hostile file would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_cache_entry_holding_a_pickle_runs_nothing_and_is_recomputed(tmp_path, small_dataset):
    dataset, cache = load_dataset(small_dataset), FeatureCache(tmp_path / "c")
    reference = _extract(dataset, cache, spec="color")
    marker = tmp_path / "ran"
    for entry in (tmp_path / "c").rglob("*.feat"):
        entry.write_bytes(pickle.dumps(_RunsCode(marker)))
    again = _extract(dataset, cache, spec="color")
    assert not marker.exists() and again.n_computed == 12
    np.testing.assert_array_equal(again.values, reference.values)


def _count_image_reads(monkeypatch) -> list:
    from bloodcli.pipeline import file_hashes

    reads = []
    real = file_hashes.read_bytes
    monkeypatch.setattr(file_hashes, "read_bytes", lambda path: reads.append(path) or real(path))
    return reads


def test_a_cached_rerun_reads_no_unchanged_image_and_a_rewritten_one_is_recomputed(tmp_path, small_dataset, monkeypatch):
    from bloodcli.pipeline import file_hashes

    monkeypatch.setattr(file_hashes, "RACY_SECONDS", 0)  # the images were copied a moment ago
    dataset, cache = load_dataset(small_dataset), FeatureCache(tmp_path / "c")
    first = _extract(dataset, cache)
    reads = _count_image_reads(monkeypatch)
    second = _extract(dataset, cache)
    assert reads == [] and second.n_computed == 0 and second.content_keys == first.content_keys
    np.testing.assert_array_equal(second.values, first.values)

    changed, donor = sorted((small_dataset / "lymphocyte").glob("*.jpg"))[:2]
    before = changed.stat()
    data = bytearray(donor.read_bytes())
    changed.write_bytes(bytes(data[: before.st_size].ljust(before.st_size, b"\0")))  # same size, other content
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old modification time
    third = _extract(dataset, cache)
    assert third.n_computed == 3 and [str(p) for p in reads] == [str(changed)]  # three extractors, one image read
    index = [s.path for s in dataset.samples].index(changed)
    assert third.content_keys[index] != first.content_keys[index]


def test_a_file_changed_just_before_it_was_read_is_read_again_next_time(tmp_path, small_dataset, monkeypatch):
    """Within a coarse file-system clock's tick a write may leave every time stamp as it was: such files are not trusted."""
    dataset, cache = load_dataset(small_dataset), FeatureCache(tmp_path / "c")
    _extract(dataset, cache, spec="color")  # every image was copied a moment ago
    reads = _count_image_reads(monkeypatch)
    assert _extract(dataset, cache, spec="color").n_computed == 0 and len(reads) == 12


def test_damaged_or_foreign_hash_files_are_ignored(tmp_path, small_dataset, monkeypatch):
    from bloodcli.pipeline import file_hashes

    monkeypatch.setattr(file_hashes, "RACY_SECONDS", 0)
    dataset, cache = load_dataset(small_dataset), FeatureCache(tmp_path / "c")
    reference = _extract(dataset, cache, spec="color")
    lymphocyte, neutrophil = sorted((tmp_path / "c" / file_hashes.FOLDER).glob("*.json"))
    lymphocyte.write_bytes(b'{"format": "bloodcli-file-hashes-1", "files": [1, 2')  # torn
    payload = json.loads(neutrophil.read_text())
    payload["files"] = {name: [0, 0, 0, 0, "0" * 32] for name in payload["files"]}  # statuses that match no file
    neutrophil.write_text(json.dumps(payload))
    reads = _count_image_reads(monkeypatch)
    again = _extract(dataset, cache, spec="color")
    assert len(reads) == 12 and again.n_computed == 0
    np.testing.assert_array_equal(again.values, reference.values)
    reads = _count_image_reads(monkeypatch)
    _extract(dataset, cache, spec="color")
    assert reads == []  # both hash files were written whole again
