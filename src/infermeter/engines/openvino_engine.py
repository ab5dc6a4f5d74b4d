"""OpenVINO: the model converted once to OpenVINO IR (cached in the store), compiled for the CPU.

Ingestion: OpenVINO users hand it either the ONNX graph or, for a TensorFlow/Keras model, the SavedModel
itself (`ov.convert_model`, its TF frontend). Where both exist, both IRs are built and a short alternating
probe at the sweep's largest batch picks the faster (INGESTION_RULE); the conversions and the probe are
build_s, and info["ingestion"] records the choice, both rates and each IR's graph form.

Shapes: with static shapes (the default) the model is reshaped to each cell's exact batch and compiled
for it, as benchmark_app -shape [8,...] runs it; in dynamic mode one compile covers batch 1..max_batch.
Compiled models are kept per (shape, hint) for the life of the worker; info["compiled_shapes"] lists them.

Clients and streams: the compiled model's configuration follows the number of clients. One client
compiles with PERFORMANCE_HINT=LATENCY; n > 1 clients compile with PERFORMANCE_HINT=THROUGHPUT and
NUM_STREAMS=n, each client owning its own InferRequest; offline compiles with THROUGHPUT and OpenVINO's own
stream count and drives its optimal number of requests. The first activation uses ctx.options.streams.

int8: NNCF post-training quantization (nncf.quantize) of the fp32 IR on the shared calibration set with
the settings of nncf_recipe (preset, overflow fix by whether oneDNN has VNNI here), cached as its own IR
folder (its name carries a hash of those settings and the calibration set's hash); compiled with inference precision
f32, so the layers NNCF left unquantized stay fp32. bf16: the inference_precision hint, only where the
CPU reports BF16 in OPTIMIZATION_CAPABILITIES.

On "cuda" OpenVINO runs only through the NVIDIA plugin of openvino_contrib (device "NVIDIA"); its
"GPU" plugin drives Intel GPUs and would measure a different device than the one named.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from infermeter.engines.base import DYNAMIC, Engine, Stopwatch, modules_missing, register_engine
from infermeter.models.onnx_graph import feed_names, onnx_path_of

IR_ARTIFACT = "openvino_ir"  # a folder: model.xml + model.bin, float32 weights, from the ONNX graph
TF_IR_ARTIFACT = "openvino_ir_tf"  # the same from the SavedModel through OpenVINO's TF frontend
INGESTION_PROBE_S = 2.0
INGESTION_RULE = (f"each IR compiled with the LATENCY hint at the cell precision and the sweep's largest batch, "
                  f"run in alternating rounds for {INGESTION_PROBE_S:g} s in all; the faster is used")
OV_DEVICE = {"cpu": "CPU", "cuda": "NVIDIA"}
# attribute names of openvino.Type; an int8 IR runs its quantized layers in int8 and the rest in f32
OV_PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}
# NNCF's presets for CPU: PERFORMANCE (symmetric weights and activations, its default) and MIXED (asymmetric
# activations), which NNCF recommends for non-ReLU activations. See nncf_preset_for.
NNCF_PRESETS = ("PERFORMANCE", "MIXED")


THROUGHPUT_AUTO = 0  # _compile(streams=0): THROUGHPUT hint, streams chosen by OpenVINO
OFFLINE_PROBE_S = 2.0  # each offline way runs this long in all, in alternating rounds, before a cell


def _probe_offline(ways: dict[str, list], staged, seconds: float = OFFLINE_PROBE_S) -> dict[str, float]:
    """Calls per second of each way (its clients, each looping in its own thread), run in alternating
    rounds (A B B A ...) so a drift of the machine's speed touches both alike."""
    import threading
    import time

    def rate(clients, seconds: float) -> float:
        counts = [0] * len(clients)
        stop = time.perf_counter() + seconds

        def loop(i):
            while time.perf_counter() < stop:
                clients[i](staged)
                counts[i] += 1

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(clients))]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / (time.perf_counter() - t0)

    names = list(ways)
    for clients in ways.values():  # one untimed call each: first-call costs stay out of the probe
        for c in clients:
            c(staged)
    rounds = 4
    got: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            got[k].append(rate(ways[k], seconds / rounds))
    return {k: float(np.median(v)) for k, v in got.items()}


@functools.cache
def _device_facts(ov_device: str) -> tuple[bool, tuple[str, ...]]:
    """(device present, its OPTIMIZATION_CAPABILITIES), probed once per process."""
    import openvino as ov

    core = ov.Core()
    if ov_device not in core.available_devices:
        return False, ()
    return True, tuple(core.get_property(ov_device, "OPTIMIZATION_CAPABILITIES"))


def _save_ir(source: str, folder) -> None:
    """IR of an ONNX file (read by OpenVINO's ONNX frontend) or a SavedModel folder (its TF frontend)."""
    import openvino as ov

    folder.mkdir(parents=True)
    ov_model = ov.convert_model(source) if os.path.isdir(source) else ov.Core().read_model(source)
    # compress_to_fp16 defaults to True: keep float32 weights so fp32 really is fp32.
    ov.save_model(ov_model, str(folder / "model.xml"), compress_to_fp16=False)


def nncf_preset_for(ov_model) -> str:
    """MIXED when the graph gates a tensor by a function of itself or of another tensor (a Multiply of two
    computed tensors: swish, hard-swish, GELU, squeeze-excite), whose outputs are asymmetric around zero,
    so a symmetric int8 grid wastes range on them; PERFORMANCE (NNCF's default) otherwise. On the
    MobileNetV3-Large export (hard-swish, squeeze-excite) MIXED kept held-out top-1 agreement with fp32
    at 0.94 against 0.89."""
    for op in ov_model.get_ops():
        if op.get_type_name() == "Multiply" and all(
                op.input_value(i).get_node().get_type_name() != "Constant" for i in range(op.get_input_size())):
            return "MIXED"
    return "PERFORMANCE"


def nncf_recipe(ov_model, transformer: bool, subset_size: int) -> dict:
    """nncf.quantize's settings for this graph and CPU, as recorded in run.json and hashed into the
    quantized IR's name:
    - preset: nncf_preset_for.
    - overflow_fix: DISABLE (full 8-bit weights) where oneDNN has VNNI, ENABLE (7-bit weights in every
      convolution and matmul, NNCF's advice when FIRST_LAYER, its default, still loses accuracy) where
      oneDNN's int8 kernels saturate (quantization.onednn_int8_saturates). On MobileNetV3-Large with
      oneDNN capped at AVX2, FIRST_LAYER failed the gate (check SNR 10.8 dB, held-out agreement 0.906)
      and ENABLE passed it (23.1 dB, 0.984); with VNNI, DISABLE raised the check SNR from 23.5 to 25.0 dB.
    - fast_bias_correction: NNCF's default (True). Full BiasCorrection (False, the setting of NNCF's
      MobileNetV2/V3 "_BC" references) gave bit-identical weights on the MobileNetV3-Large export.
    - subset_size: the whole calibration set; model_type TRANSFORMER for transformers."""
    from infermeter.quantization import onednn_int8_saturates

    return {"preset": nncf_preset_for(ov_model), "fast_bias_correction": True,
            "overflow_fix": "ENABLE" if onednn_int8_saturates() else "DISABLE", "subset_size": subset_size,
            "model_type": "TRANSFORMER" if transformer else "default"}


def _quantize_ir(ir_dir, calib, feed: dict[str, str], recipe: dict, folder) -> None:
    """NNCF post-training quantization of the fp32 IR on the calibration items (one item per sample)."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    ov_model = ov.Core().read_model(str(ir_dir / "model.xml"))
    dataset = nncf.Dataset(list(calib.items), lambda item: {g: item[k] for g, k in feed.items()})
    kw = {"model_type": nncf.ModelType.TRANSFORMER} if recipe["model_type"] == "TRANSFORMER" else {}
    quantized = nncf.quantize(ov_model, dataset, subset_size=recipe["subset_size"],
                              preset=getattr(nncf.QuantizationPreset, recipe["preset"]),
                              fast_bias_correction=recipe["fast_bias_correction"],
                              advanced_parameters=AdvancedQuantizationParameters(
                                  overflow_fix=getattr(OverflowFix, recipe["overflow_fix"])), **kw)
    folder.mkdir(parents=True)
    ov.save_model(quantized, str(folder / "model.xml"), compress_to_fp16=False)


def _int8_layers(compiled) -> int:
    """Convolutions and matrix products the compiled model runs in int8 (runtime precision i8/u8), read
    from its execution graph."""
    count = 0
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "layerType" not in rt or "runtimePrecision" not in rt:
            continue
        if rt["layerType"].astype(str) in ("Convolution", "FullyConnected", "MatMul", "Deconvolution") and \
                rt["runtimePrecision"].astype(str).lower() in ("i8", "u8"):
            count += 1
    return count


@register_engine
class OpenVinoEngine(Engine):
    name = "openvino"
    family = "openvino"
    precisions = {"cpu": ("fp32", "fp16", "bf16", "int8"), "cuda": ("fp32", "fp16")}
    #: the inference precision hint follows the precision axis; the offline performance hint is a knob
    tunables = {"ov_hint": {"cpu": ("throughput", "latency"), "cuda": ("throughput", "latency")}}
    sources = ("onnx",)
    optional_sources = ("keras",)
    requires = ("openvino",)
    no_path = {"int8": "infermeter quantizes for OpenVINO's CPU plugin only"}

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        ok, why = super().supports(model, precision, device)
        if not ok:
            return ok, why
        ok, why = cls.available()
        if not ok:
            return ok, why
        ov_device = OV_DEVICE[device]
        present, caps = _device_facts(ov_device)
        if not present:
            if device == "cuda":
                return False, ("OpenVINO has no NVIDIA device here (its 'GPU' plugin is for Intel GPUs; the NVIDIA "
                               "plugin from openvino_contrib is not installed)")
            return False, f"OpenVINO reports no {ov_device} device"
        needs = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8"}.get(precision)
        if needs and ov_device == "CPU" and needs not in caps:
            return False, f"this CPU does not report {needs} in OPTIMIZATION_CAPABILITIES ({', '.join(caps)})"
        if precision == "int8" and modules_missing("nncf"):
            return False, "not installed: nncf (OpenVINO's post-training quantization; the openvino extra has it)"
        return True, ""

    # ---- session --------------------------------------------------------------------------------
    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        import openvino as ov

        self.model = model  # its sample inputs feed the offline probe
        self.build_s = 0.0
        irs = {"onnx": self._ir(artifacts, IR_ARTIFACT, onnx_path_of(artifacts))}
        savedmodel = artifacts.get("savedmodel")
        if savedmodel is not None:
            irs["tf-frontend"] = self._ir(artifacts, TF_IR_ARTIFACT, str(savedmodel))
        ir_dir = irs[self._choose_ingestion(model, irs, precision, max_batch)]
        if precision == "int8":
            import nncf

            from infermeter.quantization import calibration_set, quantization_facts, recipe_tag

            calib = calibration_set(model, self.ctx.options.calibration_items)
            fp32_ir = ir_dir
            fp32_model = ov.Core().read_model(str(fp32_ir / "model.xml"))
            feed = feed_names([p.get_any_name() for p in fp32_model.inputs], model)
            recipe = nncf_recipe(fp32_model, model.transformer, len(calib))
            source = self.info["ingestion"]["chosen"].replace("-", "")
            name = f"openvino_int8_nncf_{recipe['preset'].lower()}_{recipe_tag(recipe)}_{source}_{calib.sha256[:16]}"
            cached = artifacts.get(name) is not None
            ir_dir = artifacts.build(name, lambda tmp: _quantize_ir(fp32_ir, calib, feed, recipe, tmp))
            self.build_s += 0.0 if cached else artifacts.built[name]
            self.info.update(quantization_facts(calib, f"nncf.quantize {nncf.__version__}", **recipe))

        with Stopwatch() as sw:
            self.core = ov.Core()
            self.ov_model = self.core.read_model(str(ir_dir / "model.xml"))
            self.dims = self._input_dims(model)
        self.load_s = sw.s  # reading the IR; each compile is timed into compile_s by the shape it serves
        self.precision = precision
        self.ov_device = OV_DEVICE[self.ctx.device]
        self.streams = self.ctx.options.streams
        self.max_batch = max_batch
        self.compiled = self.request = None
        self.input_names = [p.get_any_name() for p in self.ov_model.inputs]
        self.feed_names = feed_names(self.input_names, model)
        self.n_outputs = len(self.ov_model.outputs)
        self.info.update({"openvino_version": ov.get_version(), "ir": str(ir_dir), "device": self.ov_device,
                          "shape_mode": self.shape_mode, "compiled_shapes": {},
                          "clients_policy": "one compiled model per (input shape, hint): LATENCY for one client, "
                                            "THROUGHPUT with NUM_STREAMS=n for n clients, THROUGHPUT with "
                                            "OpenVINO's own stream count and optimal number of requests offline"})

    def _ir(self, artifacts, name: str, source: str):
        cached = artifacts.get(name) is not None
        folder = artifacts.build(name, lambda tmp: _save_ir(source, tmp))
        self.build_s += 0.0 if cached else artifacts.built[name]
        return folder

    def _choose_ingestion(self, model, irs: dict, precision: str, max_batch: int) -> str:
        """The faster IR by INGESTION_RULE (the only one when there is one), its time in build_s."""
        import openvino as ov

        from infermeter.models.graph_form import openvino_graph_form

        core = ov.Core()
        read = {k: core.read_model(str(d / "model.xml")) for k, d in irs.items()}
        facts = {"graph_form": {k: openvino_graph_form(m) for k, m in read.items()},
                 "sources": {k: str(d) for k, d in irs.items()}}
        chosen = next(iter(irs))
        if len(irs) > 1:
            with Stopwatch() as sw:
                batch = max_batch
                inputs = model.make_batch(model.sample_pool(batch), batch, 0)
                ways = {k: [self._probe_client(core, m, model, inputs, precision, max_batch)] for k, m in read.items()}
                rates = _probe_offline(ways, None, INGESTION_PROBE_S)
            chosen = max(rates, key=rates.get)
            self.build_s += sw.s
            facts.update({"rule": INGESTION_RULE, "probe_batch": batch, "probe_s": round(sw.s, 3),
                          "items_s": {k: round(v * batch, 2) for k, v in rates.items()}})
        facts["chosen"] = chosen
        self.info["ingestion"] = facts
        self.info["graph_source"] = chosen
        return chosen

    def _probe_client(self, core, ov_model, model, inputs: dict, precision: str, batch: int):
        """One LATENCY-hint request of ov_model at `batch`, as a client of _probe_offline (its own inputs)."""
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        self.ov_model, self.max_batch = ov_model, batch
        self.dims = self._input_dims(model)
        ov_model.reshape(self._shapes_for(batch))
        config = {props.inference_num_threads: self.ctx.threads,
                  hints.inference_precision: getattr(ov.Type, OV_PRECISION[precision]),
                  hints.performance_mode: hints.PerformanceMode.LATENCY}
        request = core.compile_model(ov_model, OV_DEVICE[self.ctx.device], config).create_infer_request()
        feed = {n: np.ascontiguousarray(inputs[key])
                for n, key in feed_names([p.get_any_name() for p in ov_model.inputs], model).items()}
        n_outputs = len(ov_model.outputs)

        def client(_staged):
            request.start_async(feed, share_inputs=True)
            request.wait()
            return [request.get_output_tensor(i).data for i in range(n_outputs)]

        return client

    def _input_dims(self, model) -> dict[str, list[int]]:
        """Each input's dims: fixed as the ONNX has them, open non-batch axes from the model's input specs
        (static inner shapes compile to faster CPU kernels), -1 where the batch axis is open."""
        specs = {s.name: s for s in model.input_specs()}
        spec_of = feed_names([p.get_any_name() for p in self.ov_model.inputs], model)
        dims = {}
        for port in self.ov_model.inputs:
            shape = port.get_partial_shape()
            got = [shape[i].get_length() if shape[i].is_static else -1 for i in range(shape.rank.get_length())]
            spec = specs.get(spec_of[port.get_any_name()])
            if spec is not None and len(spec.shape) == len(got):
                got = [d if d >= 0 else spec.shape[i] for i, d in enumerate(got)]
            dims[port.get_any_name()] = [got[0], *got[1:]]
        return dims

    def _shapes_for(self, shape_key) -> dict:
        """name -> PartialShape: the exact batch (static), or batch 1..max_batch (dynamic). A graph that
        fixes its batch size keeps it (the model refuses other batch sizes, and reshaping could break it)."""
        import openvino as ov

        shapes = {}
        for name, dims in self.dims.items():
            batch = dims[0]
            if batch < 0:
                batch = ov.Dimension(1, self.max_batch) if shape_key == DYNAMIC else ov.Dimension(shape_key)
            else:
                batch = ov.Dimension(batch)
            shapes[name] = ov.PartialShape([batch, *[ov.Dimension(d) for d in dims[1:]]])
        return shapes

    def _compile(self, key):
        """Reshape the model to the key's shape and compile it with the key's hint: streams == 1 is
        LATENCY, THROUGHPUT_AUTO is THROUGHPUT with OpenVINO's stream count, n is THROUGHPUT with n streams."""
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        from infermeter.models.graph_form import openvino_runtime_form

        shape_key, streams = key
        shapes = self._shapes_for(shape_key)
        self.ov_model.reshape(shapes)
        config = {props.inference_num_threads: self.ctx.threads,
                  hints.inference_precision: getattr(ov.Type, OV_PRECISION[self.precision])}
        if streams == 1:
            config[hints.performance_mode] = hints.PerformanceMode.LATENCY
        else:  # streams == THROUGHPUT_AUTO lets OpenVINO choose the number of streams for this CPU
            config[hints.performance_mode] = hints.PerformanceMode.THROUGHPUT
            if streams != THROUGHPUT_AUTO:
                config[props.streams.num] = streams
        compiled = self.core.compile_model(self.ov_model, self.ov_device, config)
        got = compiled.get_property(hints.inference_precision)
        if got != getattr(ov.Type, OV_PRECISION[self.precision]):  # the CPU may quietly choose another type
            raise RuntimeError(f"OpenVINO compiled for {got} although {self.precision} was asked")
        if self.precision == "int8":
            layers = _int8_layers(compiled)
            if not layers:  # quantization that the plugin ignored would measure fp32 under an int8 label
                raise RuntimeError("the compiled int8 model runs no layer in int8")
            self.info["int8_layers"] = layers
        self.info["compiled_shapes"][str(shape_key)] = {n: str(p) for n, p in shapes.items()}
        self.info.setdefault("runtime_form", {})[f"{shape_key}/{streams}"] = openvino_runtime_form(compiled)
        return compiled, compiled.create_infer_request()

    def _use(self, streams: int) -> None:
        """Make the compiled model for the active shape and this hint current (compiled at its first use)."""
        import openvino.properties as props
        import openvino.properties.hint as hints

        if self.batch is None:
            self.batch = self.max_batch
        self.compiled, self.request = self.compiled_for((self.shape_key(self.batch), streams), self._compile)
        self.info["graph_form"] = self.info["runtime_form"][f"{self.shape_key(self.batch)}/{streams}"]
        self.streams = streams
        self.info.update({"performance_hint": str(self.compiled.get_property(hints.performance_mode)),
                          "num_streams": int(self.compiled.get_property(props.streams.num)),
                          "inference_num_threads": int(self.compiled.get_property(props.inference_num_threads)),
                          "inference_precision": self.compiled.get_property(hints.inference_precision).get_type_name()})

    def activate(self, batch: int) -> None:
        """Compiles lazily: the clients asked for next (or the first inference) choose the hint, so a
        cell never pays for a compile with a hint it does not run."""
        self.batch = batch
        self.compiled = self.request = None

    def compiled_input_shapes(self) -> dict[str, str]:
        """The input shapes of the compiled model serving now, as OpenVINO reports them."""
        if self.compiled is None:
            self._use(self.streams)
        return {p.get_any_name(): str(p.get_partial_shape()) for p in self.compiled.inputs}

    # ---- inference ------------------------------------------------------------------------------
    def stage(self, inputs: dict[str, np.ndarray]) -> Any:
        if self.batch is None:  # nobody activated a shape: the first inputs staged name it
            self.activate(len(next(iter(inputs.values()))))
        return {name: np.ascontiguousarray(inputs[key]) for name, key in self.feed_names.items()}

    def infer(self, inputs: Any) -> list[np.ndarray]:
        if self.request is None:  # activated, no clients asked for yet: the hint of the last ones
            self._use(self.streams)
        return self._run(self.request, inputs)

    def _run(self, request, inputs) -> list[np.ndarray]:
        # start_async + wait, not request.infer: same synchronous result, but infer() ran 2-3x slower at
        # small batches on a 2-thread CPU (measured in benchmarks/engine_ceiling.py). share_inputs avoids
        # a copy in; outputs are copied out, as the request's buffers are overwritten by its next run.
        request.start_async(inputs, share_inputs=True)
        request.wait()
        return [request.get_output_tensor(i).data.copy() for i in range(self.n_outputs)]

    def offline_clients(self):
        """Offline is maximum throughput, in the faster of OpenVINO's two ways for this shape, chosen by a
        probe: the THROUGHPUT hint with as many requests in flight as OpenVINO reports optimal (what
        benchmark_app does in throughput mode), or the LATENCY hint with one request. On a CPU with few
        cores THROUGHPUT's streams split the cores, and at larger batches one stream using them all can be
        faster (MobileNetV3-Large batch 8 on 2 cores: 75 against 68 items/s). Both are compiled and
        alternately run for OFFLINE_PROBE_S; the compiles and the probe are this cell's compile_s, and
        info["offline_probe"] holds each batch size's choice and rates.

        benchmark_app drives its requests through an AsyncInferQueue; here each request has its own
        client thread (start_async + wait, the GIL released in both). The two keep the same requests in
        flight on the same compiled model; they differ only in who is woken when a request completes (the
        client's thread, or a callback on OpenVINO's thread), which is microseconds against milliseconds of
        inference. A queue would not fit the scenarios' contract either: a client is one synchronous call
        whose issue and completion the scenario times, warms up, stops and hands to LoadGen. Measured on
        the MobileNetV3-Large export (2-core AMD EPYC, same compiled model, A-B-B-A, 5 s each, 2 requests):
        client threads / AsyncInferQueue 1.11 and 1.13 at batch 1, 0.96 and 1.17 at batch 8, on a busy
        machine whose single runs spread from 32 to 62 items/s: no sign that the queue is faster."""
        import openvino.properties as props

        if self.ctx.options.ov_hint:  # the hint given (--ov-hint, or a tuner's point): no probe
            throughput = self.ctx.options.ov_hint == "throughput"
            self._use((self.ctx.options.ov_streams or THROUGHPUT_AUTO) if throughput else 1)
            n = int(self.compiled.get_property(props.optimal_number_of_infer_requests)) if throughput else 1
            requests = [self.request] + [self.compiled.create_infer_request() for _ in range(n - 1)]
            self.info["offline_requests"] = len(requests)
            self.info["offline_api"] = (f"{len(requests)} InferRequest(s) of the {self.ctx.options.ov_hint.upper()} "
                                        "compile (--ov-hint), each start_async + wait in its own client thread")
            return [functools.partial(self._run, r) for r in requests]
        ways = {}
        one_off = 0.0
        for streams in (THROUGHPUT_AUTO, 1):
            self._use(streams)
            one_off += self.active_compile_s
            n = int(self.compiled.get_property(props.optimal_number_of_infer_requests)) if streams == THROUGHPUT_AUTO else 1
            requests = [self.request] + [self.compiled.create_infer_request() for _ in range(n - 1)]
            ways["THROUGHPUT" if streams == THROUGHPUT_AUTO else "LATENCY"] = (streams, requests)
        batch = self.batch
        staged = self.stage(self.model.make_batch(self.model.sample_pool(batch), batch, 0))
        with Stopwatch() as sw:
            rates = _probe_offline({k: [functools.partial(self._run, r) for r in reqs]
                                    for k, (_, reqs) in ways.items()}, staged)
        chosen = max(rates, key=rates.get)
        streams, requests = ways[chosen]
        self._use(streams)
        self.active_compile_s = one_off + sw.s
        self.info.setdefault("offline_probe", {})[str(batch)] = {
            "chosen": chosen, "items_s": {k: round(v * batch, 2) for k, v in rates.items()},
            "probe_s": round(sw.s, 3)}
        self.info["offline_requests"] = len(requests)
        self.info["offline_api"] = (f"{len(requests)} InferRequest(s) of the {chosen} compile, each start_async "
                                    "+ wait in its own client thread (the hint chosen per batch size by a probe)")
        return [functools.partial(self._run, r) for r in requests]

    def make_clients(self, n: int):
        self._use(n)
        requests = [self.request] + [self.compiled.create_infer_request() for _ in range(n - 1)]
        return [functools.partial(self._run, r) for r in requests]

    def close(self) -> None:
        self.request = self.compiled = None
        self.by_shape.clear()
