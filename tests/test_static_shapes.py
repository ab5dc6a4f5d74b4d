"""Every engine runs compiled for the cell's exact input shape (static, the default), read back from the
engine itself; --shape-mode dynamic compiles one artifact for every batch size."""

from __future__ import annotations

import pytest
from _tiny_models import TinyCNN, build_store, reference_float64, rows

from infermeter.check import compare
from infermeter.engines import EngineContext, get_engine
from infermeter.engines.base import DYNAMIC, EngineOptions

pytest.importorskip("torch")  # builds the tiny model and its float64 reference
BATCHES = (1, 3)  # 3 is never the session's max batch: a dynamic-batch artifact could not pass for it


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = TinyCNN()
    store = build_store(model, tmp_path_factory.mktemp("artifacts"))
    inputs = model.check_inputs()
    return model, store, inputs, reference_float64(model, inputs)


def prepared(name: str, tiny, shape_mode: str, device: str = "cpu"):
    model, store, _, _ = tiny
    cls = get_engine(name)
    for ok, why in (cls.available(), cls.supports(model, "fp32", device)):
        if not ok:
            pytest.skip(f"{name}: {why}")
    engine = cls(EngineContext(device, num_threads=2, options=EngineOptions(shape_mode=shape_mode)))
    engine.prepare(model, store, "fp32", max_batch=4)
    return engine


def example_mlp_sweep(engine: str, tmp_path):
    """A quick fp32 sweep of models/example_mlp at batch 1 and 2 on one engine: (status, sweep)."""
    from pathlib import Path

    from infermeter.config import RunConfig
    from infermeter.sweep import run_sweep

    return run_sweep(RunConfig(
        model=str(Path(__file__).resolve().parents[1] / "models" / "example_mlp"), engines=[engine],
        precisions=["fp32"], batch_sizes=[1, 2], iterations=5, warmup=1, results_dir=str(tmp_path / "r"),
        cache_dir=str(tmp_path / "c"), device="cpu", quiet=True, idle_time_s=0, energy_time_s=0, num_threads=2))


def run_batch(engine, tiny, batch: int):
    """Activate `batch`, run that many reference rows, check them against float64."""
    _, _, inputs, reference = tiny
    engine.activate(batch)
    out = engine.to_numpy(engine.infer(engine.stage(rows(inputs, 0, batch))))
    result = compare(reference[:batch], out, "fp32")
    assert result.status == "pass", result.detail


def test_openvino_compiles_each_batch_for_its_exact_shape(tiny):
    engine = prepared("openvino", tiny, "static")
    for batch in BATCHES:
        run_batch(engine, tiny, batch)
        shape = engine.compiled_input_shapes()["pixels"]
        assert shape == f"[{batch},3,32,32]"
        engine.make_clients(1)  # one client: the LATENCY hint
        assert engine.compiled_input_shapes()["pixels"] == shape
        assert engine.info["performance_hint"] == "LATENCY"
        clients = engine.offline_clients()  # offline probes THROUGHPUT and LATENCY on the same shape
        assert engine.compiled_input_shapes()["pixels"] == shape
        probe = engine.info["offline_probe"][str(batch)]
        assert set(probe["items_s"]) == {"THROUGHPUT", "LATENCY"} and all(v > 0 for v in probe["items_s"].values())
        assert probe["chosen"] == max(probe["items_s"], key=probe["items_s"].get)
        assert engine.info["performance_hint"] == probe["chosen"]
        assert len(clients) == engine.info["offline_requests"]
        if probe["chosen"] == "LATENCY":
            assert len(clients) == 1
        assert engine.active_compile_s >= probe["probe_s"]  # the probe is a one-off cost of the cell
    compiles = dict(engine.compile_s)
    run_batch(engine, tiny, BATCHES[0])  # kept while the worker runs: no second compile
    assert engine.compile_s == compiles
    assert {b for b, _ in compiles} == set(BATCHES) and all(s > 0 for s in compiles.values())


def test_openvino_dynamic_mode_compiles_one_batch_range(tiny):
    engine = prepared("openvino", tiny, "dynamic")
    for batch in BATCHES:
        run_batch(engine, tiny, batch)
        assert engine.compiled_input_shapes()["pixels"] == "[1..4,3,32,32]"
    assert list(engine.compile_s) == [(DYNAMIC, 1)]


@pytest.mark.parametrize("shape_mode", ["static", "dynamic"])
def test_onnxruntime_session_shapes(tiny, shape_mode):
    """Static: each batch size probes a session with its batch fixed and the one with the batch axis as
    exported, and runs the faster; dynamic: one session, never a fixed one."""
    from infermeter.engines.onnxruntime_engine import DYNAMIC_BATCH, FIXED_BATCH

    engine = prepared("onnxruntime", tiny, shape_mode)
    fixed_sessions = set()
    for batch in BATCHES:
        run_batch(engine, tiny, batch)
        dims = {way.batch_dim: way.session.get_inputs()[0].shape[0] for way in engine.candidates[batch]}
        if shape_mode == "static":
            assert dims == {FIXED_BATCH: batch, DYNAMIC_BATCH: "batch"}
            fixed_sessions |= {id(w.session) for w in engine.candidates[batch] if w.batch_dim == FIXED_BATCH}
        else:
            assert dims == {DYNAMIC_BATCH: "batch"}
        assert engine.session_input_shapes()["pixels"][0] == dims[engine.way.batch_dim]
    if shape_mode == "static":
        assert len(fixed_sessions) == len(BATCHES)
        assert set(BATCHES) <= set(engine.compile_s)
    else:
        assert list(engine.compile_s) == [DYNAMIC]


@pytest.mark.parametrize("shape_mode", ["static", "dynamic"])
def test_torch_compile_compiles_once_per_batch_or_once_in_all(tiny, shape_mode):
    engine = prepared("torch-compile", tiny, shape_mode)
    batches = (2, 3)  # batch 1 is always its own graph in TorchDynamo (0/1 specialisation)
    for batch in batches:
        run_batch(engine, tiny, batch)
    for batch in batches:  # again: nothing recompiles
        run_batch(engine, tiny, batch)
    formats = len(engine.compiled)  # a conv model: compiled contiguous and channels_last, the faster kept
    assert formats == 2 and set(engine.info["memory_format"]) == {str(engine.shape_key(b)) for b in batches}
    if shape_mode == "static":
        assert engine.graphs == {2: formats, 3: formats}
    else:
        assert engine.graphs == {DYNAMIC: formats}
    assert engine.info["dynamic"] is (shape_mode == "dynamic")


@pytest.mark.parametrize("shape_mode", ["static", "dynamic"])
def test_torchscript_traces_once_per_batch_or_once_in_all(tiny, shape_mode):
    engine = prepared("torchscript", tiny, shape_mode)  # prepared for max_batch 4: active at 4
    for batch in (*BATCHES, *BATCHES):  # twice: nothing traces again
        run_batch(engine, tiny, batch)
    traced = engine.info["traced_input_shapes"]
    if shape_mode == "static":
        assert traced == {str(b): [f"({b}, 3, 32, 32)"] for b in (4, *BATCHES)}
        assert set(engine.compile_s) == {4, *BATCHES} and all(s > 0 for s in engine.compile_s.values())
        assert len({id(fn) for fn, _ in engine.by_shape.values()}) == 3  # a traced module per batch size
    else:
        assert traced == {DYNAMIC: ["(2, 3, 32, 32)"]}  # batch 2: the traced graph keeps the batch axis general
        assert list(engine.compile_s) == [DYNAMIC]
    assert (engine.fn, engine.active_format) == engine.by_shape[engine.shape_key(BATCHES[-1])]


@pytest.fixture(scope="module")
def small_keras(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from infermeter.artifacts import ArtifactStore
    from infermeter.models.base import ModelOptions
    from infermeter.models.keras_apps import MobileNetV3Large

    model = MobileNetV3Large(ModelOptions(input_shapes=[[1, 32, 32, 3]]))
    store = ArtifactStore(tmp_path_factory.mktemp("keras"), model.key())
    model.build_artifacts(store, {"keras"})
    return model, store


@pytest.mark.parametrize("shape_mode", ["static", "dynamic"])
def test_keras_traces_one_concrete_function_per_shape(small_keras, shape_mode):
    model, store = small_keras
    engine = get_engine("keras")(EngineContext("cpu", num_threads=2, options=EngineOptions(shape_mode=shape_mode)))
    engine.prepare(model, store, "fp32", max_batch=2)
    for batch in (1, 2):
        engine.activate(batch)
        out = engine.to_numpy(engine.infer(engine.stage(model.make_batch(model.sample_pool(batch), batch, 0))))
        assert out.shape[0] == batch
    traced = engine.info["traced_input_shapes"]
    if shape_mode == "static":
        assert traced == {"1": ["(1, 32, 32, 3)"], "2": ["(2, 32, 32, 3)"]}
    else:
        assert traced == {DYNAMIC: ["(None, 32, 32, 3)"]}


@pytest.mark.gpu
@pytest.mark.parametrize("shape_mode", ["static", "dynamic"])
def test_tensorrt_profile_is_the_cell_shape(tiny, shape_mode):
    engine = prepared("tensorrt", tiny, shape_mode, device="cuda")
    for batch in BATCHES:
        run_batch(engine, tiny, batch)
        low, opt, high = engine.profile_shapes()["pixels"]
        if shape_mode == "static":
            assert low == opt == high == [batch, 3, 32, 32]
        else:
            assert (low[0], opt[0], high[0]) == (1, 4, 4)
    assert len(engine.compile_s) == (len(BATCHES) if shape_mode == "static" else 1)


@pytest.mark.engines("openvino")
def test_sweep_rows_carry_shape_mode_and_each_cells_compile(tmp_path):
    """Through the real sweep (worker, check, cells): every row names its shape mode and carries the
    compile of the artifact it ran; run.json lists each batch size's compiled shape."""
    import json

    from infermeter.config import RunConfig
    from infermeter.errors import BadInput

    with pytest.raises(BadInput, match="--shape-mode"):
        RunConfig(shape_mode="sometimes")
    status, sweep = example_mlp_sweep("openvino", tmp_path)
    assert status == 0
    assert [(r["batch_size"], r["status"], r["shape_mode"]) for r in sweep.rows] == [(1, "ok", "static"),
                                                                                     (2, "ok", "static")]
    assert all(r["compile_s"] > 0 and r["first_inference_ms"] > 0 for r in sweep.rows)
    engines = json.loads((sweep.out_dir / "run.json").read_text())["engines"]
    (facts,) = engines.values()
    assert facts["shape_mode"] == "static"
    compiled = {shape for shapes in facts["settings"]["compiled_shapes"].values() for shape in shapes.values()}
    assert compiled == {"[1,32]", "[2,32]"}


@pytest.mark.engines("onnxruntime")
def test_sweep_records_the_onnxruntime_way_of_each_batch_size(tmp_path):
    """run.json names the way ONNX Runtime ran each batch size, with the probe that chose it, and each
    row's compile_s includes that batch size's probe."""
    import json

    status, sweep = example_mlp_sweep("onnxruntime", tmp_path)
    assert status == 0 and [r["status"] for r in sweep.rows] == ["ok", "ok"]
    (facts,) = json.loads((sweep.out_dir / "run.json").read_text())["engines"].values()
    ways = facts["settings"]["run_api"]
    assert set(ways) == {"1", "2"} and facts["settings"]["run_api_rule"]
    for row in sweep.rows:
        way = ways[str(row["batch_size"])]
        assert way["chosen"] in way["probe_median_ms"] and len(way["probe_median_ms"]) >= 2
        assert row["compile_s"] >= way["probe_s"]
