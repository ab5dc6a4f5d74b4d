"""Keras-source image classifiers (MobileNetV3-Large, ResNet50) from keras.applications.

keras.applications is the single source of the graph and the weights: `model.keras` is built first
(weights from --weights, the Keras download cache, or seeded synthetic weights made informative by
calibration), and the SavedModel, the ONNX export and the float64 reference all derive from it.
Nothing here imports TensorFlow or Keras at module level; inputs are prepared with numpy only, so
any engine's worker can make them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from infermeter.errors import BadInput, one_line
from infermeter.models.base import InputSpec, Model, ModelOptions
from infermeter.models.images import folder_photos, photo_pool, view_of
from infermeter.models.keras_calibration import (
    CALIBRATION_IMAGES,
    CLASS_PROTOTYPES,
    HARD_SWISH_GAIN,
    PROTOTYPE_TEMPERATURE,
    RESIDUAL_BRANCH_GAIN,
    SYNTHETIC_RECIPE,
    calibrate_synthetic,
)
from infermeter.models.keras_export import (
    EXPORT_RECIPE,
    INPUT_NAME,
    export_onnx,
    export_savedmodel,
    onnx_facts,
    reference_outputs,
)
from infermeter.models.keras_export import keras_tf as _keras
from infermeter.models.reference import write_reference

PRETRAINED_SIZE = (224, 224)
MIN_SIZE = 32  # keras.applications refuses smaller images
ARTIFACT_FILES = {"keras": "model.keras", "savedmodel": "savedmodel", "onnx": "model.onnx",
                  "reference": "reference.npz"}
WEIGHT_SUFFIXES = (".keras", ".h5", ".hdf5")


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
    #: the ONNX export's recipe enters the artifact key: a changed export rebuilds every cached graph
    artifact_recipe: ClassVar[str] = EXPORT_RECIPE

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
            path = store.build(ARTIFACT_FILES["onnx"], lambda tmp: export_onnx(source(), tmp, specs))
            facts.update(onnx_facts(path))
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
