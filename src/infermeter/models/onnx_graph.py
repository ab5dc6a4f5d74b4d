"""The model's ONNX export as the engines and quantization use it: finding it in the artifact store, matching
its input names to the model's, its fp16 copy. Beside the models (not under engines/), so quantization and
the engines both import it from below. Imports onnx only inside the functions that need it."""

from __future__ import annotations

from infermeter.errors import EngineUnavailable

FP16_ARTIFACT = "model_fp16.onnx"


def onnx_path_of(artifacts) -> str:
    """The model's ONNX export from the store, or a clear error when the builder has not written it."""
    path = artifacts.get("model.onnx")
    if path is None:
        raise EngineUnavailable(f"model.onnx is missing or corrupt in the artifact store {artifacts.root} "
                                "(the model's builder must export it first)")
    return str(path)


def feed_names(graph_inputs: list[str], model) -> dict[str, str]:
    """graph input name -> key of the model's input dicts. The same names normally; when an exporter
    renamed them (e.g. 'input_1:0'), by position, which the export keeps."""
    spec_names = [s.name for s in model.input_specs()]
    if set(graph_inputs) <= set(spec_names):
        return {n: n for n in graph_inputs}
    if len(graph_inputs) == len(spec_names):
        return dict(zip(graph_inputs, spec_names, strict=True))
    raise EngineUnavailable(f"the ONNX inputs {graph_inputs} do not match the model's inputs {spec_names}")


def convert_to_fp16(src: str, dst) -> None:
    """The fp16 copy of a graph (float16 weights and compute, float32 inputs and outputs)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model16 = convert_float_to_float16(onnx.load(src), keep_io_types=True)
    # Weights above 2 GB need external data; a single file is kept for everything smaller.
    large = model16.ByteSize() > 2_000_000_000
    onnx.save_model(model16, str(dst), save_as_external_data=large)


def onnx_input_names(onnx_path: str) -> list[str]:
    """The graph's real inputs (initialisers some exporters list as inputs left out), without loading weights."""
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]
