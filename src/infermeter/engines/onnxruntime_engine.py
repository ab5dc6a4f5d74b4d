"""ONNX Runtime: `onnxruntime` runs the model's ONNX export on the CPU or CUDA execution provider;
`onnxruntime-trt` on the TensorRT execution provider (CUDA EP for the nodes TensorRT does not take).

fp16 on the CUDA EP runs a converted copy of the graph (float16 weights and compute, float32 inputs and
outputs), built once into the artifact store as model_fp16.onnx; the TensorRT EP builds its own fp16
engine from the float32 graph (trt_fp16_enable). int8 on the CPU runs the static QDQ graph that
onnxruntime.quantization makes from the shared calibration set (quantization.py).

Math mode (engines/math_mode.py): the CUDA EP gets use_tf32=0 for fp32 (1 for tf32) and
cudnn_conv_algo_search=EXHAUSTIVE, read back from the session into run.json. The TensorRT EP has no
TF32 option, so TensorRT's default (TF32 on) applies: `onnxruntime-trt` offers tf32, never fp32.

How it runs on the CPU, chosen by one rule rather than tuned per model: at each batch size's activation
the candidate ways (`session.run`, and IO binding with inputs bound once per staged batch and outputs
pre-allocated per client; each on a session with the batch dimension fixed by a free-dimension override
and on the session with the batch axis as exported) run a short interleaved probe, and the one with the
lowest median call time serves that batch size. The probe is part of the batch size's compile_s; the
choice and the probe medians are in info["run_api"]. On CUDA: session.run, or IO binding over resident
inputs with --io device.
"""

from __future__ import annotations

import functools
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from infermeter.engines.base import (
    DYNAMIC,
    STAGE_SPLIT_HOST_CLOCK,
    Engine,
    Stopwatch,
    modules_missing,
    register_engine,
)
from infermeter.errors import EngineUnavailable
from infermeter.models.onnx_graph import FP16_ARTIFACT, convert_to_fp16, feed_names, onnx_path_of

#: the ways to run a session that the CPU probe compares: the API, and the session's batch dimension
SESSION_RUN, IO_BINDING = "session.run", "io binding"
FIXED_BATCH, DYNAMIC_BATCH = "fixed batch", "dynamic batch"
#: the probe: interleaved rounds (one call of every candidate each) until PROBE_S seconds have passed
#: and PROBE_MIN_ROUNDS are done, or PROBE_MAX_ROUNDS; PROBE_WARM unmeasured calls of each first
PROBE_S, PROBE_MIN_ROUNDS, PROBE_MAX_ROUNDS, PROBE_WARM = 1.0, 3, 30, 2
RUN_API_RULE = (f"at each batch size's activation, every candidate way runs {PROBE_WARM} unmeasured calls, then "
                f"interleaved rounds of one call each (at least {PROBE_MIN_ROUNDS}, until {PROBE_S:g} s or "
                f"{PROBE_MAX_ROUNDS} rounds); the lowest median call time wins. IO binding is a candidate only "
                "where every output is a tensor whose shape follows from the input shape")

GPU_PACKAGE_HINT = ("install onnxruntime-gpu alone (`pip uninstall onnxruntime` first: with both packages "
                    "installed only the CPU providers remain)")


def symbolic_batch_dims(onnx_path: str) -> list[str]:
    """The names of the graph inputs' symbolic batch dimensions (axis 0 as a dim_param); [] when the
    batch axes are fixed or unnamed, or onnx is not installed to read them."""
    if modules_missing("onnx"):
        return []
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    names = []
    for inp in graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name not in initializers and dims and dims[0].dim_param and dims[0].dim_param not in names:
            names.append(dims[0].dim_param)
    return names


class StagedFeed(dict):
    """Staged inputs (graph input name -> contiguous array) that also keep each IO binding client's
    binding of them, so a timed call binds nothing: the inputs are bound once per staged batch."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        super().__init__(arrays)
        self.bindings: dict[int, Any] = {}  # client serial -> its IOBinding over these inputs


_client_serials = itertools.count()


class BoundClient:
    """One IO binding client: its own output buffers, pre-allocated for one session and batch size, and
    its own binding of every staged batch it runs (kept on the StagedFeed). A call returns those buffers,
    valid until this client's next call; concurrent clients never share a binding or a buffer."""

    def __init__(self, session, output_names: list[str], out_specs: list[tuple[tuple, np.dtype]]):
        import onnxruntime as ort

        self.session, self.output_names = session, output_names
        self.serial = next(_client_serials)  # never reused, unlike id(): keys the bindings on staged feeds
        self.outputs = [np.empty(shape, dtype) for shape, dtype in out_specs]
        self._ortvalues = [ort.OrtValue.ortvalue_from_numpy(o) for o in self.outputs]  # views of the buffers

    def bind(self, inputs: dict[str, np.ndarray]):
        binding = self.session.io_binding()
        for name, arr in inputs.items():
            binding.bind_cpu_input(name, arr)  # the binding keeps a reference to the array
        for name, value in zip(self.output_names, self._ortvalues):
            binding.bind_ortvalue_output(name, value)
        if isinstance(inputs, StagedFeed):
            inputs.bindings[self.serial] = binding
        return binding

    def __call__(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            binding = inputs.bindings[self.serial]
        except (AttributeError, KeyError):
            binding = self.bind(inputs)
        self.session.run_with_iobinding(binding)
        return self.outputs


class RunWay:
    """One way to run a CPU session at one batch size: `api` (SESSION_RUN or IO_BINDING) on a session
    whose batch dimension is `batch_dim` (FIXED_BATCH or DYNAMIC_BATCH)."""

    def __init__(self, session, api: str, batch_dim: str, output_names: list[str],
                 out_specs: list[tuple[tuple, np.dtype]] | None = None):
        self.session, self.api, self.batch_dim = session, api, batch_dim
        self.output_names, self.out_specs = output_names, out_specs
        self._run = functools.partial(session.run, output_names)
        self._clients: list[BoundClient] = []  # kept across cells: a client's bindings stay valid

    @property
    def name(self) -> str:
        return f"{self.api}, {self.batch_dim}"

    def clients(self, n: int) -> list:
        """n callables that may run concurrently (timed): session.run is thread-safe and allocates its
        outputs per call, as a bare loop's does; IO binding clients each own their bindings and outputs."""
        if self.api == SESSION_RUN:
            return [self._run] * n
        while len(self._clients) < n:
            self._clients.append(BoundClient(self.session, self.output_names, self.out_specs))
        return self._clients[:n]

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One call this way with outputs of its own (the check's path; safe from any thread)."""
        if self.api == SESSION_RUN:
            return self._run(inputs)
        client = BoundClient(self.session, self.output_names, self.out_specs)
        client.session.run_with_iobinding(client.bind(dict(inputs)))
        return client.outputs


def output_specs(session, output_names: list[str], feeds: list[dict]) -> list[tuple[tuple, np.dtype]] | None:
    """Each output's (shape, dtype) at these feeds' batch size, from session.run; None where IO binding
    with pre-allocated outputs cannot serve it (a non-tensor output, or a shape that varies with values)."""
    specs = None
    for feed in feeds:
        outs = session.run(output_names, feed)
        if not all(isinstance(o, np.ndarray) and o.dtype != object for o in outs):
            return None
        got = [(o.shape, o.dtype) for o in outs]
        if specs is not None and got != specs:
            return None
        specs = got
    return specs


def probe(candidates: list[RunWay], feeds: list[dict]) -> tuple[RunWay | None, dict[str, float], int, dict]:
    """(the candidate with the lowest median call time, each one's median ms, rounds, the candidates
    dropped because a call failed: name -> error): PROBE_WARM unmeasured calls each, then rounds of one
    call each, the order reversed every other round. None when every candidate failed."""
    runners, dropped = [], {}
    for way in candidates:
        run = way.clients(1)[0]
        try:
            for i in range(PROBE_WARM):
                run(feeds[i % len(feeds)])
        except Exception as e:  # noqa: BLE001 — a way that cannot run this graph is no candidate
            dropped[way.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            continue
        runners.append((way, run))
    if not runners:
        return None, {}, 0, dropped
    times: dict[str, list[float]] = {way.name: [] for way, _ in runners}
    t0 = time.perf_counter()
    rounds = 0
    while rounds < PROBE_MAX_ROUNDS and (rounds < PROBE_MIN_ROUNDS or time.perf_counter() - t0 < PROBE_S):
        feed = feeds[rounds % len(feeds)]
        for way, run in (runners if rounds % 2 == 0 else runners[::-1]):
            t = time.perf_counter()
            run(feed)
            times[way.name].append(time.perf_counter() - t)
        rounds += 1
    medians = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    best = min((way for way, _ in runners), key=lambda way: medians[way.name])  # ties: the first listed
    return best, medians, rounds, dropped


@register_engine
class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    family = "onnxruntime"
    precisions = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "tf32", "fp16")}
    sources = ("onnx",)
    requires = ("onnxruntime",)
    no_path = {"bf16": "ONNX Runtime has no bf16 conversion of a graph and its CPU/CUDA providers few bf16 kernels",
               "int8": "the QDQ int8 graph runs on NVIDIA GPUs through the tensorrt engine (explicit quantization)"}
    #: the execution provider that must be active on cuda
    gpu_provider = "CUDAExecutionProvider"
    tunables = {"ort_execution_mode": {"cpu": ("sequential", "parallel")},
                "ort_graph_level": {"cpu": ("all", "extended", "basic"), "cuda": ("all", "extended", "basic")}}

    @classmethod
    def supports(cls, model, precision: str, device: str) -> tuple[bool, str]:
        ok, why = super().supports(model, precision, device)
        if not ok or device != "cuda":
            return ok, why
        ok, why = cls.available()
        if not ok:
            return ok, why
        if precision == "fp16" and cls.gpu_provider == "CUDAExecutionProvider" and modules_missing("onnx"):
            return False, "not installed: onnx (needed to convert the graph to fp16)"
        import onnxruntime

        if cls.gpu_provider not in onnxruntime.get_available_providers():
            return False, (f"onnxruntime has no {cls.gpu_provider} (available: "
                           f"{', '.join(onnxruntime.get_available_providers())}); {GPU_PACKAGE_HINT}")
        return True, ""

    # ---- session --------------------------------------------------------------------------------
    def prepare(self, model, artifacts, precision: str, max_batch: int) -> None:
        import onnxruntime as ort

        src = onnx_path_of(artifacts)
        self.build_s = 0.0
        use_trt = self.ctx.device == "cuda" and self.gpu_provider == "TensorrtExecutionProvider"
        if precision == "int8":
            from infermeter.quantization import (
                calibration_set,
                ort_cpu_qdq_flavour,
                qdq_onnx,
                qdq_settings,
                quantization_facts,
            )

            calib = calibration_set(model, self.ctx.options.calibration_items)
            flavour = ort_cpu_qdq_flavour()
            src, built = qdq_onnx(model, artifacts, calib, flavour)
            self.build_s = artifacts.built[Path(src).name] if built else 0.0
            self.info.update(quantization_facts(calib, "onnxruntime.quantization.quantize_static",
                                                **qdq_settings(flavour)))
        if precision == "fp16" and not use_trt:  # the TensorRT EP makes its own fp16 engine from the fp32 graph
            cached = artifacts.get(FP16_ARTIFACT) is not None
            fp32_src = src
            src = str(artifacts.build(FP16_ARTIFACT, lambda tmp: convert_to_fp16(fp32_src, tmp)))
            self.build_s = 0.0 if cached else artifacts.built[FP16_ARTIFACT]

        opts = ort.SessionOptions()
        o = self.ctx.options
        level = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                 "all": "ORT_ENABLE_ALL"}[o.ort_graph_level or "all"]
        parallel = o.ort_execution_mode == "parallel"  # independent branches run on the inter-op pool
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        opts.intra_op_num_threads = self.ctx.threads
        opts.inter_op_num_threads = self.ctx.threads if parallel else 1
        opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
        providers = self._providers(precision, artifacts, use_trt)

        self._src, self._opts, self._provider_list = src, opts, providers
        self.model = model  # its sample inputs feed the CPU probe at each activation
        self._batch_dims = symbolic_batch_dims(src)
        self._dynamic_session = None  # the batch axis as exported: shared by every batch size
        self.session_s: dict[Any, float] = {}  # session creation seconds, by shape key
        self.ways: dict[int, RunWay] = {}  # batch size -> the way chosen for it (CPU)
        self.candidates: dict[int, list[RunWay]] = {}  # batch size -> every way its probe compared (CPU)
        self.way: RunWay | None = None
        self._probe_s: dict[int, float] = {}  # dynamic mode: each batch size's probe seconds
        self.probe_on_cpu = self.ctx.device == "cpu"
        self.use_io_binding = self.ctx.device == "cuda" and self.ctx.io == "device"
        if self.shape_mode == "dynamic":
            self.info["shapes"] = "one session for every batch size (the graph's batch axis as exported)"
        elif self._batch_dims:
            self.info["shapes"] = (
                f"per batch size, a session with the batch dimension ({', '.join(self._batch_dims)}) fixed by "
                "SessionOptions.add_free_dimension_override_by_name (as onnxruntime_perf_test -f does)"
                + (" and the session with the batch axis as exported, whichever runs faster (run_api)"
                   if self.probe_on_cpu else ""))
        else:
            self.info["shapes"] = "one session for every batch size (the graph fixes or leaves unnamed its batch axis)"
        self.output_names = None
        self.activate(max_batch)
        self.load_s = next(iter(self.session_s.values()))  # the first session's creation is the model's load
        active = self.session.get_providers()
        if self.ctx.device == "cuda":
            self.info.update(self._math_facts(precision))
        else:
            self.info["math_mode"] = "ieee-fp32 (CPU)"

        from infermeter.models.graph_form import onnx_file_form

        self.info.update({"graph_source": "onnx", "graph_form": onnx_file_form(src)})
        self.info.update({
            "onnxruntime_version": ort.__version__, "model_file": src, "providers": active,
            "intra_op_num_threads": self.ctx.threads, "inter_op_num_threads": opts.inter_op_num_threads,
            "graph_optimization_level": level, "execution_mode": "ORT_PARALLEL" if parallel else "ORT_SEQUENTIAL",
            "io_binding": "chosen per batch size (run_api)" if self.probe_on_cpu else self.use_io_binding,
            "precision": precision,
            "concurrency": "clients share one session (its run is thread-safe); IO binding clients each own "
                           "their bindings and output buffers" if self.probe_on_cpu else
                           "clients share one session; InferenceSession.run is thread-safe"})

    def _session_for(self, key):
        """An InferenceSession for this shape key: the batch fixed to `key`, or as exported (DYNAMIC)."""
        import onnxruntime as ort

        t0 = time.perf_counter()
        opts = self._opts
        if key != DYNAMIC and self._batch_dims:
            opts = ort.SessionOptions()  # options are copied field by field: the overrides are per session
            for attr in ("graph_optimization_level", "intra_op_num_threads", "inter_op_num_threads",
                         "execution_mode"):
                setattr(opts, attr, getattr(self._opts, attr))
            for dim in self._batch_dims:
                opts.add_free_dimension_override_by_name(dim, int(key))
        session = ort.InferenceSession(self._src, sess_options=opts, providers=self._provider_list)
        wanted = self._provider_list[0]
        wanted = wanted[0] if isinstance(wanted, tuple) else wanted
        active = session.get_providers()
        if wanted not in active:  # ORT falls back to the CPU silently; a mislabelled cell is worse than none
            raise EngineUnavailable(f"onnxruntime did not enable {wanted} (active providers: {', '.join(active)})")
        self.session_s[key] = time.perf_counter() - t0
        if self.output_names is None:
            self.input_names = [i.name for i in session.get_inputs()]
            self.feed_names = feed_names(self.input_names, self.model)
            self.output_names = [o.name for o in session.get_outputs()]
        return session

    def _dynamic(self):
        """The session with the batch axis as exported, created at its first use and then shared."""
        if self._dynamic_session is None:
            self._dynamic_session = self._session_for(DYNAMIC)
        return self._dynamic_session

    def _choose_way(self, batch: int) -> RunWay:
        """Probe the candidate ways at this batch size (see the module doc) and keep the fastest; its
        choice and the probe's medians go to info["run_api"]."""
        sessions = {DYNAMIC_BATCH: self._dynamic()}
        if self.shape_mode == "static" and self._batch_dims:
            sessions = {FIXED_BATCH: self._session_for(batch), **sessions}
        pool = self.model.sample_pool(2 * batch)
        feeds = [self.stage(self.model.make_batch(pool, batch, i)) for i in range(2)]
        candidates = []
        for batch_dim, session in sessions.items():
            candidates.append(RunWay(session, SESSION_RUN, batch_dim, self.output_names))
            try:
                specs = output_specs(session, self.output_names, feeds)
            except Exception:  # noqa: BLE001 — a graph session.run cannot run here fails in the check, not here
                specs = None
            if specs is not None:
                candidates.append(RunWay(session, IO_BINDING, batch_dim, self.output_names, specs))
        with Stopwatch() as sw:
            way, medians, rounds, dropped = probe(candidates, feeds)
        facts = {"probe_median_ms": {k: round(v, 4) for k, v in medians.items()}, "probe_rounds": rounds,
                 "probe_s": round(sw.s, 3)}
        if dropped:
            facts["probe_dropped"] = dropped
        if way is None:  # nothing runs: session.run, so the check reports the graph's own error
            way = candidates[0]
        self.candidates[batch] = candidates
        self.info.setdefault("run_api_rule", RUN_API_RULE)
        self.info.setdefault("run_api", {})[str(batch)] = {"chosen": way.name, **facts}
        return way

    def activate(self, batch: int) -> None:
        self.batch = batch
        key = self.shape_key(batch)
        if not self.probe_on_cpu:
            self.session = self.compiled_for(key, self._session_for)
            return
        if self.shape_mode == "static":  # the probe is part of this batch size's compile
            self.way = self.compiled_for(key, self._choose_way)
        else:  # one session; the probe per batch size adds to its compile in this batch size's cells
            self.compiled_for(key, lambda _: self._dynamic())
            if batch not in self.ways:
                with Stopwatch() as sw:
                    self.ways[batch] = self._choose_way(batch)
                self._probe_s[batch] = sw.s
            self.way = self.ways[batch]
            self.active_compile_s = self.compile_s[key] + self._probe_s[batch]
        self.ways[batch] = self.way
        self.session = self.way.session

    def session_input_shapes(self) -> dict[str, list]:
        """The input shapes of the session serving now, as ORT reports them."""
        return {i.name: list(i.shape) for i in self.session.get_inputs()}

    def _providers(self, precision: str, artifacts, use_trt: bool) -> list:
        if self.ctx.device != "cuda":
            return ["CPUExecutionProvider"]
        from infermeter.engines.math_mode import CUDNN_ALGO_SEARCH, tf32_allowed

        # The worker sets CUDA_VISIBLE_DEVICES, so the chosen GPU is always device 0 here.
        cuda_opts = {"device_id": 0, "use_tf32": int(tf32_allowed(precision)),
                     "cudnn_conv_algo_search": CUDNN_ALGO_SEARCH.upper()}
        providers: list = [("CUDAExecutionProvider", cuda_opts), "CPUExecutionProvider"]
        if use_trt:
            import onnxruntime as ort

            from infermeter.device import gpu_name_and_capability
            from infermeter.engines.tensorrt_engine import installed_trt_version, plan_cache_key

            # the EP's engine cache in a folder per board, compute capability, versions and settings, so
            # an engine built on another GPU is never picked up
            name, cc = gpu_name_and_capability(self.ctx.gpu_id or 0)
            key = plan_cache_key(name, cc, f"onnxruntime {ort.__version__}, tensorrt {installed_trt_version()}",
                                 {"precision": precision, "trt_fp16_enable": precision == "fp16"})
            trt_opts = {"device_id": 0, "trt_fp16_enable": precision == "fp16",
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(artifacts.root / f"ort_trt_cache_{precision}_{key}")}
            providers.insert(0, ("TensorrtExecutionProvider", trt_opts))
        return providers

    def _math_facts(self, precision: str) -> dict:
        """The providers' effective options as the session reports them (run.json)."""
        opts = self.session.get_provider_options()
        cuda = opts.get("CUDAExecutionProvider", {})
        facts = {"provider_options": opts,
                 "cudnn_algo_search": f"cudnn_conv_algo_search={cuda.get('cudnn_conv_algo_search')}"}
        if self.gpu_provider == "TensorrtExecutionProvider":
            trt = opts.get("TensorrtExecutionProvider", {})
            facts["math_mode"] = {"tensorrt_ep": "TensorRT default (TF32 on; the EP has no TF32 option)",
                                  "trt_fp16_enable": trt.get("trt_fp16_enable"),
                                  "cuda_ep_use_tf32": cuda.get("use_tf32")}
        else:
            facts["math_mode"] = {"cuda_ep_use_tf32": cuda.get("use_tf32")}
        return facts

    # ---- inference ------------------------------------------------------------------------------
    def stage(self, inputs: dict[str, np.ndarray]) -> Any:
        arrays = StagedFeed({name: np.ascontiguousarray(inputs[key]) for name, key in self.feed_names.items()})
        if not self.use_io_binding:
            return arrays
        import onnxruntime as ort

        # Resident copies on the GPU, bound per call; outside the timed region by design (--io device).
        return {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0) for k, v in arrays.items()}

    def infer(self, inputs: Any) -> list[np.ndarray]:
        if self.way is not None:  # the CPU: the way chosen for this batch size, with outputs of its own
            return self.way.infer(inputs)
        if not self.use_io_binding:
            return self.session.run(self.output_names, inputs)
        binding = self.session.io_binding()  # one binding per call, so concurrent clients never share one
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu")  # results land on the host, ready when run returns
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def staged_timings(self, inputs: dict[str, np.ndarray]) -> dict[str, float] | None:
        """h2d / compute / d2h on CUDA, each a synchronous ORT call timed on the host clock from pageable
        memory (ORT exposes no CUDA events): not the CUDA-event split torch and TensorRT report, and the
        row names the method (stage_split_method)."""
        if self.ctx.device != "cuda":
            return None
        import onnxruntime as ort

        t0 = time.perf_counter()
        on_gpu = {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(inputs[key]), "cuda", 0)
                  for name, key in self.feed_names.items()}
        t1 = time.perf_counter()
        binding = self.session.io_binding()
        for name, value in on_gpu.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)
        self.session.run_with_iobinding(binding)  # the CUDA EP synchronises its stream at the end of a run
        t2 = time.perf_counter()
        binding.copy_outputs_to_cpu()
        t3 = time.perf_counter()
        return {"h2d_ms": (t1 - t0) * 1e3, "compute_ms": (t2 - t1) * 1e3, "d2h_ms": (t3 - t2) * 1e3,
                "stage_split_method": STAGE_SPLIT_HOST_CLOCK}

    def make_clients(self, n: int):
        """On the CPU, the chosen way's timed clients: with IO binding each owns its bindings and output
        buffers (a call's outputs stay valid until that client's next call)."""
        if self.way is None:
            return super().make_clients(n)
        return self.way.clients(n)

    def offline_clients(self):
        return self.make_clients(1)

    def close(self) -> None:
        self.session = self.way = self._dynamic_session = None
        self.ways.clear()
        self.candidates.clear()
        self.by_shape.clear()


@register_engine
class OnnxRuntimeTensorRTEngine(OnnxRuntimeEngine):
    """ONNX Runtime's TensorRT execution provider, as many deployments run ORT on NVIDIA GPUs."""

    name = "onnxruntime-trt"
    # TF32 cannot be turned off through the TensorRT EP: fp32 would be a false name
    precisions = {"cuda": ("tf32", "fp16")}
    gpu_provider = "TensorrtExecutionProvider"
