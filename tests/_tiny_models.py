"""A tiny seeded CNN classifier for engine tests: torch source, ONNX export, float64 reference.

Weights and inputs come from seeded generators, so every process builds the same model. BatchNorm
running statistics are random too, so eval-mode BN does real work that engines must fold correctly.
"""

from __future__ import annotations

import numpy as np

from infermeter.models.base import InputSpec, Model

IMAGE_HW = 32
NUM_CLASSES = 10
INPUT_NAME = "pixels"


def _tiny_cnn_module(seed: int):
    import torch
    from torch import nn

    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU())

    net = nn.Sequential(block(3, 16, 1), block(16, 32, 2), block(32, 32, 2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, NUM_CLASSES))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / m.in_features ** 0.5)
        # Centre the classifier on the mean feature of calibration inputs: post-ReLU features share a
        # large positive mean that would otherwise push every input to the same class.
        net.eval()
        calib = np.concatenate([item[INPUT_NAME] for item in _pixels_pool(seed + 1000, 64)])
        features = net[:-1](torch.from_numpy(calib))
        net[-1].bias.copy_(-net[-1].weight @ features.mean(dim=0))
    return net


def _pixels_pool(seed: int, n: int) -> list[dict[str, np.ndarray]]:
    # Noise plus a per-item colour offset, so items differ in what global pooling keeps.
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(n):
        offset = rng.standard_normal((1, 3, 1, 1))
        pixels = rng.standard_normal((1, 3, IMAGE_HW, IMAGE_HW)) + 1.5 * offset
        pool.append({INPUT_NAME: pixels.astype(np.float32)})
    return pool


def export_onnx(module, path, batch: int = 2) -> None:
    """ONNX export with a dynamic batch axis (the TorchScript-based exporter: no onnxscript needed)."""
    import warnings

    import torch

    example = torch.zeros(batch, 3, IMAGE_HW, IMAGE_HW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter warns that it is legacy
        torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=["logits"],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)


class TinyCNN(Model):
    """Torch-source tiny classifier (the torch engines use load_torch)."""

    name = "tiny_cnn"
    sources = ("torch", "onnx")
    builder = "torch"
    task = "classification"
    requires = ("torch",)

    def input_specs(self) -> list[InputSpec]:
        return [InputSpec(INPUT_NAME, "float32", (-1, 3, IMAGE_HW, IMAGE_HW), ("batch", "c", "h", "w"))]

    def sample_pool(self, n: int) -> list[dict[str, np.ndarray]]:
        return _pixels_pool(self.options.seed + 1, n)

    def load_torch(self, store):
        return _tiny_cnn_module(self.options.seed)

    def build_artifacts(self, store, kinds: set[str]) -> dict:
        if "onnx" in kinds:
            store.build("model.onnx", lambda tmp: export_onnx(_tiny_cnn_module(self.options.seed), tmp))
        return {"export_tool": "torch.onnx.export (dynamo=False)", "opset": 17}


class TinyCNNOnnxOnly(TinyCNN):
    """The same network seen as an ONNX-only model: torch engines must convert it with onnx2torch."""

    name = "tiny_cnn_onnx"
    sources = ("onnx",)

    def load_torch(self, store):
        raise NotImplementedError(f"{self.name} has no torch source")


def build_store(model: TinyCNN, cache_dir):
    """An artifact store holding model.onnx for `model`."""
    from infermeter.artifacts import ArtifactStore

    store = ArtifactStore(cache_dir, model.key())
    model.build_artifacts(store, {"onnx"})
    return store


def reference_float64(model: TinyCNN, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The source network's output computed in float64, independently of any engine."""
    import torch

    net = _tiny_cnn_module(model.options.seed).double()
    with torch.no_grad():
        return net(torch.from_numpy(inputs[INPUT_NAME].astype(np.float64))).numpy()


def rows(batch: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[start:stop]) for k, v in batch.items()}


def run_clients_concurrently(engine, clients, inputs: dict[str, np.ndarray], rounds: int = 3) -> list[tuple]:
    """Every client runs `rounds` passes over the two halves of `inputs` (in opposite orders, so the
    clients work on different data at the same moment), all clients released at once.
    Returns (start_row, stop_row, output) for every call; a client's exception propagates."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    n_rows = next(iter(inputs.values())).shape[0]
    halves = [(0, n_rows // 2), (n_rows // 2, n_rows)]
    staged = {h: engine.stage(rows(inputs, *h)) for h in halves}
    barrier = threading.Barrier(len(clients))

    def work(index: int) -> list[tuple]:
        order = halves if index % 2 == 0 else halves[::-1]
        barrier.wait(timeout=60)
        # copied at once: a client may return buffers it reuses at its next call (Engine.make_clients)
        return [(*h, engine.to_numpy(clients[index](staged[h])).copy()) for _ in range(rounds) for h in order]

    with ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(work, i) for i in range(len(clients))]
        return [call for f in futures for call in f.result(timeout=300)]


def matmul_relu_session(features: int = 64, seed: int = 0):
    """(onnxruntime CPU session on a one-layer MatMul+Relu graph over [N, features], its weight matrix):
    a real engine workload with a service time small enough for scenario tests."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).normal(size=(features, features)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "matmul_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", features])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]), w


def run_cpu_engine(name: str, model, store, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The first output of a real engine on the CPU (fp32), or a skip saying why it cannot run here."""
    import pytest

    from infermeter.engines import EngineContext, get_engine

    cls = get_engine(name)
    for ok, why in (cls.available(), cls.supports(model, "fp32", "cpu")):
        if not ok:
            pytest.skip(f"{name}: {why}")
    engine = cls(EngineContext(device="cpu", num_threads=1, cache_dir=str(store.root.parent)))
    engine.prepare(model, store, "fp32", len(next(iter(inputs.values()))))
    try:
        return engine.to_numpy(engine.infer(engine.stage(inputs)))
    finally:
        engine.close()
