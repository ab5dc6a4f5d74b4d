"""Export a small text classifier to ONNX and save input items for it, as a user would for their own model.

    python models/example_inputs/make_model.py   # writes classifier.onnx and inputs.npz beside this file

The classifier takes int64 token ids [batch, tokens] (both axes dynamic in the graph); inputs.npz holds
16 items under the input's name, batch on axis 0, so `infermeter run classifier.onnx --inputs inputs.npz`
checks and times the model on them (their 12 tokens fix the dynamic axis).
"""

import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
VOCAB, WIDTH, CLASSES, TOKENS, ITEMS = 1000, 32, 4, 12, 16


class TextClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, WIDTH)
        self.head = torch.nn.Linear(WIDTH, CLASSES)

    def forward(self, input_ids):
        return self.head(self.embed(input_ids).mean(dim=1))


def main() -> None:
    torch.manual_seed(0)
    model = TextClassifier().eval()
    example = torch.zeros(1, TOKENS, dtype=torch.int64)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    torch.onnx.export(model, (example,), str(HERE / "classifier.onnx"), input_names=["input_ids"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}})
    ids = np.random.default_rng(0).integers(1, VOCAB, size=(ITEMS, TOKENS), dtype=np.int64)
    np.savez(HERE / "inputs.npz", input_ids=ids)
    print(f"wrote {HERE / 'classifier.onnx'} and {HERE / 'inputs.npz'} ({ITEMS} items)")


if __name__ == "__main__":
    main()
