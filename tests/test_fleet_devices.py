"""What a fleet device is, from node records shaped as ray.nodes() gives them; the fleet's one-line errors
(Ray missing, no cluster at --address, flags that do not apply) without starting anything."""

from __future__ import annotations

import sys

import pytest

from infermeter import cli
from infermeter.errors import BadInput
from infermeter.fleet import INSTALL_HINT
from infermeter.fleet.devices import discover, holders, select


def node(nid: str, alive: bool = True, **resources) -> dict:
    return {"NodeID": nid * 8, "Alive": alive, "Resources": {"CPU": 4.0, **resources}}


NODES = [
    node("a", **{"infermeter_device:cpu-a": 1.0}),
    node("b", **{"infermeter_device:cpu-a": 1.0}),  # a second node of device cpu-a
    node("c", GPU=2.0, **{"accelerator_type:H100": 1.0}),
    node("d", GPU=1.0, **{"accelerator_type:L4": 1.0}),
    node("e", GPU=1.0),  # Ray names no type
    node("f", alive=False, **{"infermeter_device:cpu-z": 1.0}),
]


def test_per_accelerator_type_one_device_per_label_or_gpu_type():
    devs = discover(NODES, "accelerator-type")
    assert sorted(d.label for d in devs) == ["GPU", "H100", "L4", "cpu-a"]  # the dead node's cpu-z is gone
    cpu = next(d for d in devs if d.label == "cpu-a")
    assert cpu.kind == "cpu" and cpu.resource == "infermeter_device:cpu-a" and cpu.node_id is None
    assert sorted(holders(NODES, cpu)) == ["a" * 8, "b" * 8]
    assert holders(NODES, cpu, exclude={"a" * 8}) == ["b" * 8]  # where a lost node's cells can go
    h100 = next(d for d in devs if d.label == "H100")
    assert h100.kind == "cuda" and holders(NODES, h100) == ["c" * 8]
    assert [d.label for d in discover(NODES, "accelerator-type", "cpu")] == ["cpu-a"]
    assert sorted(d.label for d in discover(NODES, "accelerator-type", "cuda")) == ["GPU", "H100", "L4"]


def test_per_node_and_per_gpu():
    per_node = discover(NODES, "node")
    assert sorted(d.label for d in per_node) == ["GPU-eeeeeeee", "H100-cccccccc", "L4-dddddddd",
                                                 "cpu-a-aaaaaaaa", "cpu-a-bbbbbbbb"]
    pinned = next(d for d in per_node if d.label == "cpu-a-aaaaaaaa")
    assert holders(NODES, pinned) == ["a" * 8] and holders(NODES, pinned, exclude={"a" * 8}) == []
    per_gpu = [d for d in discover(NODES, "gpu") if d.kind == "cuda"]
    assert sorted((d.label, d.gpu_index) for d in per_gpu) == [
        ("GPU-eeeeeeee-gpu0", 0), ("H100-cccccccc-gpu0", 0), ("H100-cccccccc-gpu1", 1), ("L4-dddddddd-gpu0", 0)]


def test_devices_filter():
    devs = discover(NODES, "accelerator-type")
    assert [d.label for d in select(devs, ["L4", "cpu-a"])] == ["L4", "cpu-a"]
    assert select(devs, None) == devs
    with pytest.raises(BadInput, match="no device 'A100'.*H100"):
        select(devs, ["A100"])
    with pytest.raises(BadInput, match="no device in the cluster"):
        select([], None)


def one_line(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_without_ray_one_line_says_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    line = one_line(capsys, ["fleet", "mobilenet_v3_large", "--address", "local", "--results-dir", str(tmp_path)])
    assert INSTALL_HINT in line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv, words", [
    (["--address", "127.0.0.1:1"], "no Ray cluster answers"),
    (["--gpu-id", "0"], "--gpu-id does not apply"),
    (["--device-label", "x"], "--device-label does not apply"),
    (["--per", "rack"], "invalid choice"),
])
def test_fleet_bad_input_is_one_line(argv, words, capsys, tmp_path):
    pytest.importorskip("ray")
    line = one_line(capsys, ["fleet", "mobilenet_v3_large", "--results-dir", str(tmp_path), *argv])
    assert words in line
