"""GPU-path decisions checked without a GPU: which board --gpu-id picks and what the worker is told,
NVML fallbacks and labels on scripted readings, plan cache keys, TF32 switches as each library reports
them, the refusals that need no hardware, and a compile at the first call landing in first_inference_ms."""

from __future__ import annotations

import types

import pytest

from infermeter.device import DeviceInfo, NvmlDevice, choose_gpu, worker_env
from infermeter.errors import BadInput
from infermeter.results.metadata import package_warnings
from infermeter.telemetry import open_monitor
from infermeter.telemetry.nvml import NvmlReader, clock_event_names, power_usage_label

BOARDS = [NvmlDevice(0, "NVIDIA A100-SXM4-40GB", "GPU-aaaa1111-0000-0000-0000-000000000000"),
          NvmlDevice(1, "NVIDIA H100 80GB HBM3", "GPU-bbbb2222-0000-0000-0000-000000000000",
                     ("MIG-cccc3333-0000-0000-0000-000000000000",)),
          NvmlDevice(2, "NVIDIA L4", "GPU-dddd4444-0000-0000-0000-000000000000")]


# ---- --gpu-id and CUDA_VISIBLE_DEVICES ---------------------------------------------------------------
def test_gpu_id_is_the_nvml_index_and_the_worker_gets_the_board_by_uuid():
    dev = choose_gpu(BOARDS, 2, None)
    assert (dev.gpu_id, dev.name, dev.uuid) == (2, "NVIDIA L4", BOARDS[2].uuid)
    assert worker_env(dev)["CUDA_VISIBLE_DEVICES"] == BOARDS[2].uuid  # "GPU-<uuid>", never an ordinal
    assert not dev.mig and "NVML index 2" in dev.selection
    assert choose_gpu(BOARDS, None, None).gpu_id == 0
    with pytest.raises(BadInput, match="no such GPU"):
        choose_gpu(BOARDS, 3, None)


@pytest.mark.parametrize("visible,gpu_id,index", [
    ("2,0", 0, 2),                      # ordinals are NVML/PCI-bus indices; --gpu-id indexes the list
    ("2,0", 1, 0),
    ("GPU-dddd4444", 0, 2),             # a UUID prefix, as nvidia-smi -L prints and schedulers pass
    ("gpu-aaaa1111-0000-0000-0000-000000000000", 0, 0),
])
def test_a_cuda_visible_devices_already_set_is_respected(visible, gpu_id, index):
    dev = choose_gpu(BOARDS, gpu_id, visible)
    assert dev.gpu_id == index and dev.uuid == BOARDS[index].uuid
    assert worker_env(dev)["CUDA_VISIBLE_DEVICES"].lower() == BOARDS[index].uuid.lower()
    assert f"CUDA_VISIBLE_DEVICES={visible} already set" in dev.selection


def test_a_mig_slice_is_passed_on_and_marked_board_wide():
    dev = choose_gpu(BOARDS, 0, "MIG-cccc3333-0000-0000-0000-000000000000")
    assert dev.mig and dev.gpu_id == 1 and dev.uuid == BOARDS[1].uuid  # NVML meters the parent board
    assert worker_env(dev)["CUDA_VISIBLE_DEVICES"] == "MIG-cccc3333-0000-0000-0000-000000000000"
    assert choose_gpu(BOARDS, 1, None).mig  # the board itself is split into slices


@pytest.mark.parametrize("visible,gpu_id,match", [
    ("0", 1, "lists 1 device"), ("", 0, "empty"), ("GPU-ffff", 0, "matches no GPU"), ("7", 0, "matches no GPU"),
])
def test_bad_selections_say_why(visible, gpu_id, match):
    with pytest.raises(BadInput, match=match):
        choose_gpu(BOARDS, gpu_id, visible)


def test_resolve_device_reads_nvml_and_hands_the_worker_a_uuid(monkeypatch):
    import sys

    from infermeter import device
    from infermeter.device import resolve_device

    nv = types.ModuleType("pynvml")  # a driver-less NVML listing two boards, the second split into MIG slices
    nv.NVMLError = type("NVMLError", (Exception,), {})
    nv.nvmlInit = nv.nvmlShutdown = lambda: None
    nv.nvmlDeviceGetCount = lambda: 2
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetName = lambda h: [b"NVIDIA L4", b"NVIDIA H100 80GB HBM3"][h]
    nv.nvmlDeviceGetUUID = lambda h: f"GPU-board-{h}" if isinstance(h, int) else f"MIG-slice-{h[1]}"
    nv.nvmlDeviceGetMigMode = lambda h: [h, h]
    nv.nvmlDeviceGetMaxMigDeviceCount = lambda h: 2
    nv.nvmlDeviceGetMigDeviceHandleByIndex = lambda h, k: (h, k)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    device.nvml_gpus.cache_clear()
    try:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        dev = resolve_device("cuda", 1)
        assert (dev.name, dev.uuid, dev.cuda_visible, dev.mig) == ("NVIDIA H100 80GB HBM3", "GPU-board-1",
                                                                    "GPU-board-1", True)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-slice-1")
        dev = resolve_device("cuda", None)
        assert (dev.gpu_id, dev.cuda_visible, dev.mig) == (1, "MIG-slice-1", True)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
        assert resolve_device("cuda", 1).uuid == "GPU-board-0"
    finally:
        device.nvml_gpus.cache_clear()


def test_worker_memory_limit_is_refused_on_a_cuda_run(monkeypatch, tmp_path):
    from infermeter import device
    from infermeter.config import RunConfig
    from infermeter.sweep import Sweep

    monkeypatch.setattr(device, "nvml_gpus", lambda: (tuple(b.name for b in BOARDS), ""))
    monkeypatch.setattr(device, "nvml_devices", lambda: list(BOARDS))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = RunConfig(device="cuda", worker_memory_limit_mb=4096, results_dir=str(tmp_path), quiet=True)
    with pytest.raises(BadInput, match="RLIMIT_AS.*CPU runs only"):
        Sweep(cfg)


# ---- NVML on scripted readings -----------------------------------------------------------------------
def scripted_pynvml(compute_capability, event_reasons: bool, instant_field: bool = False):
    """pynvml's own error classes and constants, with device calls scripted (no driver needed)."""
    import pynvml

    nv = types.SimpleNamespace(**{k: getattr(pynvml, k) for k in dir(pynvml) if k.startswith(("NVML", "nvmlErr"))})
    calls = {"throttle": 0, "event": 0}

    def field_values(h, ids):
        if not instant_field:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [types.SimpleNamespace(nvmlReturn=pynvml.NVML_SUCCESS, valueType=1,
                                      value=types.SimpleNamespace(uiVal=123_000))]

    def event(h):
        calls["event"] += 1
        if not event_reasons:  # a driver older than the binding: the symbol is missing from libnvidia-ml
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return 0x4

    def throttle(h):
        calls["throttle"] += 1
        return 0x40

    nv.nvmlDeviceGetName = lambda h: "scripted"
    nv.nvmlDeviceGetUUID = lambda h: "GPU-scripted"
    nv.nvmlDeviceGetTotalEnergyConsumption = lambda h: 1000
    nv.nvmlDeviceGetFieldValues = field_values
    nv.nvmlDeviceGetPowerUsage = lambda h: 250_000
    nv.nvmlDeviceGetCudaComputeCapability = lambda h: compute_capability
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=50)
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2**30)
    nv.nvmlDeviceGetComputeRunningProcesses = lambda h: []
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 60
    nv.nvmlDeviceGetClockInfo = lambda h, clock: 1500
    nv.nvmlDeviceGetCurrentClocksEventReasons = event
    nv.nvmlDeviceGetCurrentClocksThrottleReasons = throttle
    nv.nvmlShutdown = lambda: None
    return nv, calls


def test_throttle_reasons_fall_back_to_the_older_call_on_older_drivers():
    nv, calls = scripted_pynvml((9, 0), event_reasons=False)
    reader = NvmlReader(nv, object(), pid=1)
    bits = [reader.sample()["clock_event_bits"] for _ in range(3)]
    assert bits == [0x40] * 3 and clock_event_names(bits[0]) == ["HwThermalSlowdown"]
    assert calls == {"event": 1, "throttle": 3}  # the missing call is tried once, then never again
    assert not any("clock-event" in p for p in reader.problems())
    nv, calls = scripted_pynvml((9, 0), event_reasons=True)
    assert NvmlReader(nv, object(), pid=1).sample()["clock_event_bits"] == 0x4 and calls["throttle"] == 0


@pytest.mark.parametrize("cc,label", [((7, 0), "instant"), ((8, 0), "instant"), ((8, 6), "average-1s"),
                                      ((8, 9), "average-1s"), ((9, 0), "average-1s"), ((10, 0), "average-1s")])
def test_power_usage_is_labelled_by_architecture(cc, label):
    assert power_usage_label(cc) == label  # GA100 (8.0) and older: instantaneous; GA10x, Ada, Hopper+: 1-s mean
    nv, _ = scripted_pynvml(cc, event_reasons=True)
    reader = NvmlReader(nv, object(), pid=1)
    assert reader.power_field == label and reader.sample()["power_w"] == 250.0
    nv, _ = scripted_pynvml(cc, event_reasons=True, instant_field=True)  # the instant field wins where present
    assert NvmlReader(nv, object(), pid=1).power_field == "instant"
    assert power_usage_label(None).startswith("unknown")


def test_energy_on_a_mig_slice_is_said_to_be_board_wide():
    from test_energy_window import CallEnergyGpu

    from infermeter.measure import run_metered
    from infermeter.scenarios import Budget, Load

    for mig in (False, True):
        gpu = CallEnergyGpu()
        dev = DeviceInfo("cuda", gpu.name, 1, mig=mig)
        with open_monitor(dev, 50.0, gpu_reader=gpu) as mon:
            _, tel = run_metered(mon, "single-stream", Load([gpu.client], lambda i: i, 1), Budget(warmup=0, iterations=3))
        assert tel.energy.energy_source.startswith("nvml-energy-counter")
        assert ("board-wide" in tel.energy.energy_source) == mig


# ---- packaging, cache keys, precisions ---------------------------------------------------------------
def test_both_onnxruntime_packages_are_warned_about():
    assert package_warnings({"onnxruntime": "1.32.0", "onnxruntime-gpu": None}) == []
    (warning,) = package_warnings({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.32.0"})
    assert "both onnxruntime" in warning and "pip install onnxruntime-gpu" in warning


def test_plan_cache_key_changes_with_the_board_tensorrt_and_every_setting():
    from infermeter.engines.tensorrt_engine import plan_cache_key

    base = ("NVIDIA H100 80GB HBM3", "9.0", "10.13.0", {"precision": "fp32", "tf32": False, "profiles": {"x": [[1, 3]]}})
    key = plan_cache_key(*base)
    assert key == plan_cache_key(*base) and len(key) == 16
    variants = [("NVIDIA A100-SXM4-40GB",) + base[1:], (base[0], "8.0") + base[2:], base[:2] + ("11.4.0", base[3]),
                base[:3] + ({**base[3], "tf32": True},), base[:3] + ({**base[3], "profiles": {"x": [[1, 8]]}},)]
    assert len({plan_cache_key(*v) for v in variants} | {key}) == len(variants) + 1


def test_precision_names_are_promises_per_engine():
    from infermeter.engines import get_engine, load_all

    load_all()
    ort_trt = get_engine("onnxruntime-trt")
    assert "fp32" not in ort_trt.precisions["cuda"]  # the TensorRT EP cannot turn TF32 off
    for name in ("onnxruntime", "torch", "torch-compile", "tensorrt"):
        assert {"fp32", "tf32"} <= set(get_engine(name).precisions["cuda"]), name
        assert "tf32" not in get_engine(name).precisions.get("cpu", ()), name


def test_torch_switches_read_back_ieee_for_fp32_and_tf32_for_tf32():
    torch = pytest.importorskip("torch")
    from infermeter.engines.torch_common import set_torch_math

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)
    try:
        info = set_torch_math(torch, "tf32", cuda=True)
        assert info["math_mode"] == {"cuda.matmul.allow_tf32": True, "cudnn.allow_tf32": True,
                                     "float32_matmul_precision": "high"}
        info = set_torch_math(torch, "fp32", cuda=True)
        assert info["math_mode"] == {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False,
                                     "float32_matmul_precision": "highest"}
        assert info["cudnn_algo_search"].startswith("exhaustive") and torch.backends.cudnn.benchmark
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])
        torch.backends.cudnn.benchmark = saved[3]


def test_onnxruntime_cuda_options_turn_tf32_off_and_search_exhaustively(tmp_path):
    pytest.importorskip("onnxruntime")
    from infermeter.artifacts import ArtifactStore
    from infermeter.engines import EngineContext, get_engine, load_all

    load_all()
    store = ArtifactStore(tmp_path, "m")
    for precision, tf32 in (("fp32", 0), ("tf32", 1), ("fp16", 0)):
        engine = get_engine("onnxruntime")(EngineContext("cuda"))
        (name, opts), cpu = engine._providers(precision, store, use_trt=False)
        assert name == "CUDAExecutionProvider" and cpu == "CPUExecutionProvider"
        assert opts["use_tf32"] == tf32 and opts["cudnn_conv_algo_search"] == "EXHAUSTIVE"


# ---- first-call costs --------------------------------------------------------------------------------
def test_a_compile_at_the_first_call_is_compile_s_not_the_checks(tmp_path):
    """torch.compile compiles at the first call of a shape. The engine makes that call when the shape is
    activated, before the correctness check, so the cell's compile_s holds the compile (seconds), never
    its timing."""
    pytest.importorskip("torch")
    from infermeter.config import RunConfig
    from infermeter.results.writer import read_results
    from infermeter.sweep import run_sweep

    folder = tmp_path / "lin"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        "name: lin\nframework: torch\ntask: classification\n"
        "inputs:\n  - name: x\n    dtype: float32\n    dims_names: [batch, features]\n"
        "    example_shape: [1, 16]\n    runtime_dims: [-1, 16]\noutputs:\n  - name: logits\n")
    (folder / "load.py").write_text(
        "import torch\nfrom infermeter.models.plugin import register_loader\n\n"
        "@register_loader\ndef load(config):\n    torch.manual_seed(0)\n    return torch.nn.Linear(16, 8)\n")
    # batch 2 = the check's chunk size as well (max batch 2): on the old order the check compiled it
    status, s = run_sweep(RunConfig(model=str(folder), engines=["torch-compile"], device="cpu", batch_sizes=[2],
                                    iterations=20, warmup=2, idle_time=0, quiet=True, results_dir=str(tmp_path / "r"),
                                    cache_dir=str(tmp_path / "c")))
    (row,) = read_results(s.out_dir / "results.csv")
    assert row["status"] == "ok", row["error"]
    assert float(row["compile_s"]) * 1e3 > 50 * float(row["latency_ms_p50"])
    assert row["shape_mode"] == "static"


# ---- on a GPU (skipped without one) ----------------------------------------------------------------
@pytest.mark.gpu
def test_the_worker_sees_the_board_nvml_meters():
    import os
    import subprocess
    import sys

    pytest.importorskip("torch")
    from infermeter.device import resolve_device

    dev = resolve_device("cuda", 0)
    env = {**os.environ, **worker_env(dev)}
    code = "import torch; print(torch.cuda.device_count(), torch.cuda.get_device_properties(0).uuid)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    count, uuid = out.stdout.split()
    assert int(count) == 1 and dev.uuid.lower().endswith(uuid.lower()), (dev.uuid, uuid)


@pytest.mark.gpu
def test_torch_fp32_is_ieee_and_tf32_rounds_on_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this torch has no CUDA")
    from infermeter.engines.torch_common import set_torch_math

    gen = torch.Generator().manual_seed(0)
    a64 = torch.randn(512, 2048, generator=gen, dtype=torch.float64)
    b64 = torch.randn(2048, 512, generator=gen, dtype=torch.float64)
    exact = a64 @ b64
    x = torch.randn(8, 64, 32, 32, generator=gen)
    w = torch.randn(64, 64, 3, 3, generator=gen) / 24
    conv_exact = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)

    def errors() -> tuple[float, float]:
        a, b = a64.float().cuda(), b64.float().cuda()
        mm = ((a @ b).double().cpu() - exact).abs().max() / exact.abs().max()
        conv = torch.nn.functional.conv2d(x.cuda(), w.cuda(), padding=1).double().cpu()
        return float(mm), float((conv - conv_exact).abs().max() / conv_exact.abs().max())

    try:
        set_torch_math(torch, "fp32", cuda=True)
        mm, conv = errors()
        assert mm < 1e-5 and conv < 1e-5, (mm, conv)  # IEEE float32: ~1e-7 relative per product
        if torch.cuda.get_device_capability(0) >= (8, 0):  # TF32 exists from Ampere on
            set_torch_math(torch, "tf32", cuda=True)
            mm, conv = errors()
            assert mm > 1e-5, mm  # 10-bit mantissa inputs: ~1e-4 relative
    finally:
        set_torch_math(torch, "fp32", cuda=True)


@pytest.mark.gpu
def test_onnxruntime_cuda_session_reports_tf32_off_and_exhaustive_search(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from _tiny_models import TinyCNN, build_store, reference_float64

    from infermeter.check import compare
    from infermeter.engines import EngineContext, get_engine, load_all

    load_all()
    model = TinyCNN()
    ok, why = get_engine("onnxruntime").supports(model, "fp32", "cuda")
    if not ok:
        pytest.skip(why)
    store = build_store(model, tmp_path)
    inputs = model.check_inputs()
    engine = get_engine("onnxruntime")(EngineContext("cuda", gpu_id=0))
    engine.prepare(model, store, "fp32", max_batch=8)
    assert str(engine.info["math_mode"]["cuda_ep_use_tf32"]) == "0"
    assert "EXHAUSTIVE" in engine.info["cudnn_algo_search"]
    got = engine.to_numpy(engine.infer(engine.stage(inputs)))
    assert compare(reference_float64(model, inputs), got, "fp32").status == "pass"


@pytest.mark.gpu
def test_real_power_field_follows_the_architecture():
    import os

    import pynvml

    from infermeter.telemetry.nvml import open_nvml

    reader, why = open_nvml(0, None, os.getpid())
    assert reader is not None, why
    try:
        if reader.power_field not in (None, "instant"):
            cc = pynvml.nvmlDeviceGetCudaComputeCapability(pynvml.nvmlDeviceGetHandleByIndex(0))
            assert reader.power_field == power_usage_label(tuple(cc))
        sample = reader.sample()
        assert reader.power_field is None or sample["power_w"] > 0
    finally:
        reader.close()
