"""The artifact cache: one build under concurrency, corruption detected and rebuilt."""

import multiprocessing as mp
import time

from infermeter.artifacts import ArtifactStore, hash_path


def _slow_build(cache, counter_dir, i):
    store = ArtifactStore(cache, "m-key")

    def builder(tmp):
        (counter_dir / f"built-by-{i}").write_text("x")
        time.sleep(0.5)  # long enough for the other process to arrive mid-build
        tmp.write_bytes(b"artifact-bytes" * 1000)

    store.build("model.onnx", builder)


def test_two_processes_building_the_same_artifact_build_it_once(tmp_path):
    counter = tmp_path / "counter"
    counter.mkdir()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_slow_build, args=(tmp_path / "cache", counter, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(list(counter.iterdir())) == 1
    store = ArtifactStore(tmp_path / "cache", "m-key")
    assert store.get("model.onnx").read_bytes() == b"artifact-bytes" * 1000


def test_corrupted_artifact_is_detected_and_rebuilt(tmp_path):
    store = ArtifactStore(tmp_path, "k")
    builds = []

    def builder(tmp):
        builds.append(1)
        tmp.write_bytes(b"good" * 100)

    p = store.build("model.onnx", builder)
    store.build("model.onnx", builder)
    assert len(builds) == 1  # cached
    p.write_bytes(b"good" * 50)  # truncated on disk
    assert store.get("model.onnx") is None
    store.build("model.onnx", builder)
    assert len(builds) == 2 and p.read_bytes() == b"good" * 100


def test_folder_artifacts_hash_their_files(tmp_path):
    store = ArtifactStore(tmp_path, "k")

    def builder(tmp):
        (tmp / "variables").mkdir(parents=True)
        (tmp / "saved_model.pb").write_bytes(b"graph")
        (tmp / "variables" / "v.data").write_bytes(b"weights")

    d = store.build("savedmodel", builder)
    before = hash_path(d)
    (d / "variables" / "v.data").write_bytes(b"weightz")
    assert hash_path(d) != before and not store.valid("savedmodel")
