"""Keras-source image classifiers (MobileNetV3-Large, ResNet50) from keras.applications.

keras.applications is the single source of the graph and the weights: `model.keras` is built first
(weights from --weights, the Keras download cache, or seeded synthetic weights made informative by
calibration), and the SavedModel, the ONNX export and the float64 reference all derive from it.
Nothing here imports TensorFlow or Keras at module level; inputs are prepared with numpy only, so
any engine's worker can make them.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from infermeter.errors import BadInput, one_line
from infermeter.models.base import InputSpec, Model, ModelOptions
from infermeter.models.images import folder_photos, photo_pool, view_of
from infermeter.models.reference import write_reference

PRETRAINED_SIZE = (224, 224)
MIN_SIZE = 32  # keras.applications refuses smaller images
INPUT_NAME = "images"  # the keras Input's name, the SavedModel signature key and the ONNX input name
OUTPUT_NAME = "probabilities"  # the ONNX output name
ONNX_OPSET = 17
ARTIFACT_FILES = {"keras": "model.keras", "savedmodel": "savedmodel", "onnx": "model.onnx",
                  "reference": "reference.npz"}
# Synthetic weights (see calibrate_synthetic). Their recipe version enters the artifact key, so a changed
# recipe never reuses artifacts built from the old one.
SYNTHETIC_RECIPE = "v2"
# BatchNorm statistics and class prototypes come from this many photo views (not the check inputs).
CALIBRATION_IMAGES = 16
# Shaping of the random network before its BatchNorm statistics are set, so that a small perturbation
# (rounding, quantization) does not grow layer after layer (values chosen by int8 agreement, see below):
RESIDUAL_BRANCH_GAIN = 0.1  # BatchNorm gamma ending each residual branch: blocks start near identity
HARD_SWISH_GAIN = 0.25  # BatchNorm gamma before hard-swish: inputs in its smooth region around 0
# The classifier is a nearest-prototype one: this many prototypes (k-means over the calibration views'
# features), logits = TEMPERATURE * (c . x - |c|^2 / 2) on standardised features, so every input has a
# clear winner, as in a trained network, instead of a near-tie among 1000 random logits.
CLASS_PROTOTYPES = 7
PROTOTYPE_TEMPERATURE = 4.0
WEIGHT_SUFFIXES = (".keras", ".h5", ".hdf5")


def _keras():
    """Keras on the TensorFlow backend (the only one whose SavedModel/tf2onnx path we use)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"keras runs on the {keras.backend.backend()!r} backend; set KERAS_BACKEND=tensorflow")
    return keras


def keras_cache_dir() -> Path:
    """Where keras.applications keeps downloaded weights (KERAS_HOME, else ~/.keras), models/ subfolder."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


@functools.lru_cache(maxsize=8)
def _hash_file_cached(path: str, mtime_ns: int, size: int) -> str:
    from infermeter.artifacts import hash_path

    return hash_path(path)


class KerasApplication(Model):
    """A keras.applications classifier; subclasses name the application and its preprocessing."""

    sources: ClassVar[tuple[str, ...]] = ("keras", "onnx")
    builder: ClassVar[str] = "tf"
    task: ClassVar[str] = "classification"
    requires: ClassVar[tuple[str, ...]] = ("tensorflow", "keras")
    #: attribute of keras.applications that builds the architecture
    application: ClassVar[str] = ""
    #: extra keyword arguments for it
    application_kwargs: ClassVar[dict] = {}
    #: the file keras.applications downloads into its cache for the 1000-class model with top
    cache_file: ClassVar[str] = ""
    #: --inputs takes a folder of images, centre-cropped and preprocessed as the model's own photos are
    accepts_inputs: ClassVar[bool] = True

    def __init__(self, options: ModelOptions | None = None):
        super().__init__(options)
        self._photos = None
        if self.options.inputs:
            if self.options.image:
                raise BadInput("--image and --inputs both give the inputs: use one")
            self._photos = folder_photos(self.options.inputs)

    # ---- inputs -----------------------------------------------------------------------------------
    def image_size(self) -> tuple[int, int]:
        """(height, width): 224x224 unless --input-shapes gives one [1,H,W,3] or [1,3,H,W] shape."""
        shapes = self.options.input_shapes
        if not shapes:
            return PRETRAINED_SIZE
        if len(shapes) != 1:
            raise BadInput(f"--input-shapes: {self.name} has one input, got {len(shapes)} shapes {shapes}")
        s = list(shapes[0])
        if len(s) != 4:
            raise BadInput(f"--input-shapes: {self.name} takes a rank-4 image batch [1,H,W,3] or [1,3,H,W], "
                           f"got rank {len(s)}: {s}")
        if s[3] == 3:
            h, w = s[1], s[2]
        elif s[1] == 3:  # NCHW spelling of the same request; the model itself stays NHWC
            h, w = s[2], s[3]
        else:
            raise BadInput(f"--input-shapes: {self.name} needs 3 colour channels ([1,H,W,3] or [1,3,H,W]), got {s}")
        if h < MIN_SIZE or w < MIN_SIZE:
            raise BadInput(f"--input-shapes: {self.name} needs images of at least {MIN_SIZE}x{MIN_SIZE}, got {h}x{w}")
        return h, w

    def input_specs(self) -> list[InputSpec]:
        h, w = self.image_size()
        return [InputSpec(INPUT_NAME, "float32", (-1, h, w, 3), ("batch", "height", "width", "channels"))]

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """[N,H,W,3] RGB float32 0..255 -> what the model takes."""
        return images.astype(np.float32, copy=False)

    def sample_pool(self, n: int) -> list[dict[str, np.ndarray]]:
        h, w = self.image_size()
        if self._photos is not None:  # the user's images, centre-cropped, rotating when the pool is larger
            views = self.preprocess(np.stack([view_of(p, h, w, None) for p in self._photos]).astype(np.float32))
            return [{INPUT_NAME: np.ascontiguousarray(views[i % len(views)][None])} for i in range(n)]
        x = self.preprocess(photo_pool(n, h, w, self.options.seed, self.options.image))
        return [{INPUT_NAME: np.ascontiguousarray(x[i:i + 1])} for i in range(n)]

    def check_inputs(self) -> dict[str, np.ndarray]:
        if self._photos is not None:  # the first --check-samples of the user's images, no repeats
            k = min(self.options.check_samples, len(self._photos))
            return self.make_batch(self.sample_pool(k), k, 0)
        return super().check_inputs()

    def calibration_images(self) -> np.ndarray:
        """Photo views after the check inputs' ones, so synthetic weights are not fitted to the check."""
        h, w = self.image_size()
        k = self.options.check_samples
        return self.preprocess(photo_pool(k + CALIBRATION_IMAGES, h, w, self.options.seed, self.options.image)[k:])

    # ---- weights ----------------------------------------------------------------------------------
    def weights_source(self) -> tuple[str, Path | None]:
        """('file', path) for --weights, ('keras-cache', path) for a pretrained download usable at this
        size, else ('synthetic', None)."""
        if self.options.weights:
            return "file", Path(self.options.weights)
        cached = keras_cache_dir() / self.cache_file
        if self.image_size() == PRETRAINED_SIZE and cached.is_file():
            return "keras-cache", cached
        return "synthetic", None

    def weights_id(self) -> str:
        kind, path = self.weights_source()
        if kind == "file":
            return str(path)
        if kind == "keras-cache":
            return f"keras-cache:{path.name}"
        return f"synthetic:{self.options.seed}:{SYNTHETIC_RECIPE}"

    def weights_origin(self) -> str:
        cached = keras_cache_dir() / self.cache_file
        state = "present" if cached.is_file() else "absent"
        return (f"keras.applications.{self.application}: --weights PATH, else the Keras cache {cached} "
                f"({state}; used at {PRETRAINED_SIZE[0]}x{PRETRAINED_SIZE[1]}), else seeded synthetic weights "
                "with BatchNorm calibrated on photographs")

    def _weights_file_hash(self) -> str | None:
        kind, path = self.weights_source()
        if kind == "synthetic":
            return None
        if not path.exists():
            raise BadInput(f"--weights: {str(path)!r} does not exist")
        if path.is_dir():
            raise BadInput(f"--weights: {str(path)!r} is a folder; {self.name} takes a .keras/.h5/.weights.h5 file")
        st = path.stat()
        return _hash_file_cached(str(path), st.st_mtime_ns, st.st_size)

    def calibration_note(self) -> str:
        kind, path = self.weights_source()
        if kind != "synthetic":
            return f"none: weights from {kind} {path}"
        return (f"synthetic weights (seed {self.options.seed}, recipe {SYNTHETIC_RECIPE}): BatchNorm gamma "
                f"{RESIDUAL_BRANCH_GAIN} ending residual branches and {HARD_SWISH_GAIN} before hard-swish; "
                f"BatchNorm moving mean/variance set layer by layer from "
                f"{CALIBRATION_IMAGES} photo views (one training-mode pass, momentum 0); a nearest-prototype "
                f"classifier over {CLASS_PROTOTYPES} k-means prototypes of their features "
                f"(temperature {PROTOTYPE_TEMPERATURE})")

    # ---- the keras model ----------------------------------------------------------------------------
    def architecture(self):
        """The keras.applications graph at this input size, with seeded random weights, input named INPUT_NAME."""
        keras = _keras()
        keras.utils.set_random_seed(self.options.seed)
        h, w = self.image_size()
        inp = keras.Input((h, w, 3), name=INPUT_NAME)
        app = getattr(keras.applications, self.application)(
            input_tensor=inp, weights=None, **self.application_kwargs)
        # Given input_tensor, keras.applications makes a list-input model; re-wrap for a single tensor input.
        return keras.Model(inp, app.output, name=app.name)

    def make_keras(self, calibrate: bool = True):
        """The keras model with the source weights. `calibrate=False` keeps raw random synthetic weights
        (only useful to show that they make an uninformative reference)."""
        model = self.architecture()
        kind, path = self.weights_source()
        if kind != "synthetic":
            load_weights_file(model, path, self.name)
        elif calibrate:
            calibrate_synthetic(model, self.calibration_images())
        return model

    def load_keras(self, store):
        keras = _keras()
        path = store.build(ARTIFACT_FILES["keras"], self._write_keras_file)
        return keras.saving.load_model(str(path), compile=False)

    def _write_keras_file(self, tmp: Path) -> None:
        staged = tmp.with_name(tmp.name + ".keras")  # keras insists on the suffix
        try:
            self.make_keras().save(str(staged))
            os.replace(staged, tmp)
        finally:
            if staged.exists():
                staged.unlink()

    # ---- artifacts ------------------------------------------------------------------------------------
    def build_artifacts(self, store, kinds: set[str]) -> dict[str, Any]:
        unknown = set(kinds) - set(ARTIFACT_FILES)
        if unknown:
            raise ValueError(f"{self.name} cannot build {sorted(unknown)}; it builds {sorted(ARTIFACT_FILES)}")
        facts: dict[str, Any] = {"weights": self.weights_id(), "calibration": self.calibration_note()}
        keras_model = None

        def source():
            nonlocal keras_model
            if keras_model is None:
                keras_model = self.load_keras(store)  # model.keras first: everything else derives from it
            return keras_model

        # model.keras is built only when asked for or when a derived artifact has to be (re)built, so a
        # machine without TensorFlow (a GPU box running torch/ORT) works from a carried ONNX + reference.
        if "keras" in kinds:
            facts["keras_file"] = str(store.build(ARTIFACT_FILES["keras"], self._write_keras_file))
        specs = self.input_specs()
        if "savedmodel" in kinds:
            facts["savedmodel"] = str(store.build(ARTIFACT_FILES["savedmodel"],
                                                  lambda tmp: export_savedmodel(source(), tmp, specs)))
        if "onnx" in kinds:
            skipped: list[str] = []
            path = store.build(ARTIFACT_FILES["onnx"], lambda tmp: skipped.extend(export_onnx(source(), tmp, specs)))
            facts.update(onnx_facts(path))
            if skipped:
                facts["onnx_optimizers_skipped"] = skipped
        if "reference" in kinds:
            inputs = self.check_inputs()

            def compute():  # only when reference.npz has to be (re)built
                outputs, computed_in, note = reference_outputs(source(), inputs)
                return outputs, {"computed_in": computed_in, "note": note}

            path = write_reference(store, inputs, compute)
            with np.load(path) as z:
                facts["reference_dtype"] = str(z["computed_in"])
                facts["reference_note"] = str(z["note"])
        if self.options.inputs:
            facts.update({"inputs": str(self.options.inputs), "inputs_sha256": self.inputs_hash()})
        return facts


class MobileNetV3Large(KerasApplication):
    name: ClassVar[str] = "mobilenet_v3_large"
    aliases: ClassVar[tuple[str, ...]] = ("MobileNetV3L", "mobilenetv3l")
    application: ClassVar[str] = "MobileNetV3Large"
    # Its own Rescaling layer is part of the graph, so it takes 0..255 pixels.
    application_kwargs: ClassVar[dict] = {"include_preprocessing": True}
    cache_file: ClassVar[str] = "weights_mobilenet_v3_large_224_1.0_float.h5"


# keras.applications.resnet50.preprocess_input ("caffe" mode), in numpy so no worker needs keras for inputs.
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


class ResNet50(KerasApplication):
    name: ClassVar[str] = "resnet50"
    application: ClassVar[str] = "ResNet50"
    cache_file: ClassVar[str] = "resnet50_weights_tf_dim_ordering_tf_kernels.h5"

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """RGB -> BGR, minus the ImageNet channel means, no scaling."""
        return np.ascontiguousarray(images[..., ::-1].astype(np.float32) - CAFFE_BGR_MEAN)


# ---- helpers shared with the TF/Keras engines ------------------------------------------------------------
def load_weights_file(model, path: Path, model_name: str) -> None:
    """Load a .keras/.h5/.weights.h5 file into `model`; BadInput (one line) when that is impossible."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"--weights: {str(p)!r} does not exist or is not a file")
    if not p.name.lower().endswith(WEIGHT_SUFFIXES):
        raise BadInput(f"--weights: {str(p)!r} is not a .keras, .h5 or .weights.h5 file")
    try:
        model.load_weights(str(p))
    except Exception as e:  # keras raises ValueError/OSError/KeyError for mismatched or corrupt files
        raise BadInput(f"--weights: cannot load {str(p)!r} into {model_name} ({one_line(e)})") from None


def calibrate_synthetic(model, images: np.ndarray) -> None:
    """Make random weights informative and well-conditioned, as a trained network is.

    Plain random weights give every input the same output. BatchNorm statistics fitted to photos fix
    that, but a random network with BatchNorm is chaotic: a small perturbation grows block after block
    relative to the signal (ONNX Runtime's qdq_loss_debug shows an int8 ResNet50's stream falling from
    45 dB to 0 dB SNR by its last block), so int8 or fp16 agreement would measure the weights, not the
    engine. A trained network does not behave so. Before the statistics are set, each residual branch
    therefore ends with a small BatchNorm gamma (each block starts near identity, as with
    zero-init-residual training), and hard-swish inputs are scaled into its smooth region. The
    classifier then reads the features by nearest prototype, which gives each input a clear winning
    class instead of a near-tie among 1000 random logits. On ONNX Runtime's QDQ int8 this takes held-out
    top-1 agreement with fp32 from 0.2-0.3 to 0.96 (MobileNetV3-Large) and 0.98 (ResNet50).

    A training-mode pass with momentum 0 sets each BatchNorm's moving mean/variance to the statistics
    of its own input, computed after every earlier BatchNorm is already normalised: layer by layer in
    one pass. Dropout (after the last BatchNorm in these models) does not touch the statistics."""
    keras = _keras()
    _shape_random_network(model)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in norms]
    try:
        for bn in norms:
            bn.momentum = 0.0
        model(images, training=True)
    finally:
        for bn, m in zip(norms, saved, strict=True):
            bn.momentum = m
    classifier = [layer for layer in model.layers if getattr(layer, "kernel", None) is not None][-1]
    features = keras.Model(model.input, classifier.input)(images, training=False)
    features = np.asarray(features, dtype=np.float64).reshape(len(images), -1)
    weights = classifier.get_weights()
    kernel, bias = prototype_classifier(features, weights[0].size // features.shape[1])
    weights[0] = kernel.reshape(weights[0].shape).astype(weights[0].dtype)
    weights[1] = bias.reshape(weights[1].shape).astype(weights[1].dtype)
    classifier.set_weights(weights)


def _consumers(model) -> dict[str, list[str]]:
    """Layer name -> names of the layers that take its output, read from the functional config."""
    def histories(obj):
        if isinstance(obj, dict):
            if "keras_history" in obj:
                yield obj["keras_history"][0]
            for v in obj.values():
                yield from histories(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                yield from histories(v)

    out: dict[str, list[str]] = {}
    for layer in model.get_config()["layers"]:
        for src in set(histories(layer.get("inbound_nodes", []))):
            out.setdefault(src, []).append(layer["name"])
    return out


def _activation_of(layer) -> str | None:
    keras = _keras()
    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", None)
    return None


def _shape_random_network(model) -> None:
    """The pre-calibration shaping described in calibrate_synthetic (BatchNorm gammas)."""
    keras = _keras()
    consumers = _consumers(model)
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    producers: dict[str, list[str]] = {}
    for src, outs in consumers.items():
        for n in outs:
            producers.setdefault(n, []).append(src)
    branch_ends = set()
    for layer in model.layers:  # of an Add's two inputs, the one computed last ends the residual branch
        if isinstance(layer, keras.layers.Add) and len(producers.get(layer.name, [])) == 2:
            last = max(producers[layer.name], key=order.__getitem__)
            if isinstance(model.get_layer(last), keras.layers.BatchNormalization):
                branch_ends.add(last)
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        after = [_activation_of(model.get_layer(n)) for n in consumers.get(layer.name, [])]
        gamma, *rest = layer.get_weights()
        if layer.name in branch_ends:
            layer.set_weights([np.full_like(gamma, RESIDUAL_BRANCH_GAIN), *rest])
        elif after and all(a in ("hard_silu", "hard_swish") for a in after):
            layer.set_weights([np.full_like(gamma, HARD_SWISH_GAIN), *rest])


def prototype_classifier(features: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [D, classes], bias [classes]) of a nearest-prototype classifier over `features` [N, D].

    Features are standardised (centred, unit mean square norm); k-means with a deterministic
    farthest-point start gives CLASS_PROTOTYPES prototypes c_k, each on its own class;
    logit_k = T (c_k . x - |c_k|^2 / 2) ranks them by distance. Every other class sits T below the
    median prototype logit of the calibration views, so it rarely wins and never by a hair."""
    n, d = features.shape
    k = min(CLASS_PROTOTYPES, n, classes)
    mean = features.mean(axis=0)
    x = features - mean
    scale = max(float(np.sqrt((x ** 2).sum(axis=1).mean())), 1e-12)
    x /= scale
    centres = [x[0]]
    for _ in range(k - 1):
        dist = np.min([((x - c) ** 2).sum(axis=1) for c in centres], axis=0)
        centres.append(x[int(np.argmax(dist))])
    c = np.array(centres)
    for _ in range(50):
        label = np.argmin(((x[:, None] - c[None]) ** 2).sum(axis=2), axis=1)
        new = np.array([x[label == j].mean(axis=0) if np.any(label == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    slots = np.linspace(0, classes, k, endpoint=False).astype(int) + classes // (2 * k)
    kernel = np.zeros((d, classes))
    bias = np.zeros(classes)
    t = PROTOTYPE_TEMPERATURE
    kernel[:, slots] = (t * c / scale).T
    bias[slots] = t * (-(c @ mean) / scale - (c * c).sum(axis=1) / 2)
    others = np.setdiff1d(np.arange(classes), slots)
    bias[others] = float(np.median((features @ kernel + bias)[:, slots])) - t
    return kernel, bias


def clone_with_dtype_policy(model, policy: str):
    """The same functional graph with every layer under `policy` ('float64', 'mixed_float16'), same weights."""
    keras = _keras()

    def clone_layer(op):
        config = op.get_config()
        if isinstance(op, keras.layers.Layer) and not isinstance(op, keras.layers.InputLayer):
            config["dtype"] = policy
        return op.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights([np.asarray(w, dtype=v.dtype) for w, v in zip(model.get_weights(), clone.weights, strict=True)])
    return clone


def reference_outputs(keras_model, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, str, str]:
    """(outputs as float64, dtype computed in, note): float64 clone of the model where possible."""
    feed = inputs[INPUT_NAME] if len(inputs) == 1 else inputs
    try:
        model64 = clone_with_dtype_policy(keras_model, "float64")
        x64 = {k: v.astype(np.float64) for k, v in feed.items()} if isinstance(feed, dict) else feed.astype(np.float64)
        out = np.asarray(model64(x64, training=False), dtype=np.float64)
        return out, "float64", "keras model cloned under dtype policy float64 with the same weights"
    except Exception as e:  # an op without a float64 kernel: say so, and use the float32 model
        out = np.asarray(keras_model(feed, training=False), dtype=np.float64)
        return out, "float32", f"float64 clone failed ({one_line(e)}); reference computed in float32"


def export_savedmodel(keras_model, path: Path, specs: list[InputSpec]) -> None:
    """A SavedModel whose serving signature takes `specs` (batch axis dynamic) by input name."""
    import tensorflow as tf

    keras = _keras()
    if len(specs) != 1:
        raise ValueError(f"export_savedmodel handles single-input models, got {len(specs)} inputs")
    spec = specs[0]
    signature = [tf.TensorSpec((None, *spec.shape[1:]), spec.dtype, name=spec.name)]
    archive = keras.export.ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint(name="serve", fn=lambda x: keras_model(x, training=False), input_signature=signature)
    archive.write_out(str(path), verbose=False)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        self.messages.append(record.getMessage() + (f" ({one_line(exc)})" if exc else ""))


def export_onnx(keras_model, path: Path, specs: list[InputSpec], opset: int = ONNX_OPSET) -> list[str]:
    """ONNX via tf2onnx from the keras call, dynamic batch axis named 'batch', output named OUTPUT_NAME.
    Returns the tf2onnx graph optimizers that failed and were skipped (the graph stays correct)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, *s.shape[1:]), s.dtype, name=s.name) for s in specs]
    fn = tf.function(lambda *xs: keras_model(xs[0] if len(xs) == 1 else list(xs), training=False))
    # tf2onnx logs optimizer failures with full tracebacks; keep them as one-line facts instead.
    opt_logger = logging.getLogger("tf2onnx.optimizer")
    collect, propagate = _Collect(), opt_logger.propagate
    opt_logger.addHandler(collect)
    opt_logger.propagate = False
    try:
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset)
    finally:
        opt_logger.removeHandler(collect)
        opt_logger.propagate = propagate
    graph = proto.graph
    if len(graph.output) == 1 and graph.output[0].name != OUTPUT_NAME:
        _rename_value(graph, graph.output[0].name, OUTPUT_NAME)
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    onnx.checker.check_model(proto)
    with open(path, "wb") as fh:
        fh.write(proto.SerializeToString())
    return sorted(set(collect.messages))


def _rename_value(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for value in list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def onnx_facts(path: Path) -> dict[str, Any]:
    """Exporter, its version and the opset, read from the ONNX file itself (right even when cached)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"onnx_file": str(path), "onnx_exporter": f"{proto.producer_name} {proto.producer_version}".strip(),
            "onnx_opset": opset}
