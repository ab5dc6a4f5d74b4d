"""What one device means in a Ray cluster, read from the nodes Ray reports (no Ray import here).

- A node started with `--resources '{"infermeter_device:<label>": 1}'` offers its CPU as the device <label>.
- A node with GPUs offers them by Ray's `accelerator_type:<T>` resource (T = "GPU" when Ray names none).
`--per accelerator-type` makes one device of each label or GPU type (any node holding it may run it);
`--per node` one per node and type; `--per gpu` one per GPU of each node.
"""

from __future__ import annotations

from dataclasses import dataclass

from infermeter.errors import BadInput
from infermeter.fleet import RESOURCE_PREFIX
from infermeter.parsing import safe_name


@dataclass(frozen=True)
class FleetDevice:
    label: str                      # the device's name in results: the folder <results>/<model>/<label>
    kind: str                       # "cpu" or "cuda"
    resource: str | None = None     # custom resource a CPU device's task holds
    accelerator_type: str | None = None
    node_id: str | None = None      # set when the device is one node's (--per node / gpu)
    gpu_index: int | None = None    # --per gpu: the node's n-th GPU

    @property
    def folder(self) -> str:
        return safe_name(self.label)


def _gpu_type(resources: dict) -> str:
    types = [k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")]
    return types[0] if types else "GPU"


def alive(nodes: list[dict]) -> list[dict]:
    return [n for n in nodes if n.get("Alive", n.get("alive"))]


def discover(nodes: list[dict], per: str, device: str = "auto") -> list[FleetDevice]:
    """Distinct devices of the live nodes (dicts as ray.nodes() gives them), in a stable order.

    device 'cpu' keeps CPU devices only, 'cuda' GPU devices only; 'auto' keeps both.
    """
    found: dict[str, FleetDevice] = {}
    for n in sorted(alive(nodes), key=lambda n: n["NodeID"]):
        res, nid = n.get("Resources", {}), n["NodeID"]
        short = nid[:8]
        if device in ("auto", "cpu"):
            for key in sorted(k for k in res if k.startswith(RESOURCE_PREFIX)):
                label = key[len(RESOURCE_PREFIX):]
                if per == "accelerator-type":
                    found.setdefault(label, FleetDevice(label, "cpu", resource=key))
                else:
                    found[f"{label}-{short}"] = FleetDevice(f"{label}-{short}", "cpu", resource=key, node_id=nid)
        gpus = int(res.get("GPU", 0))
        if gpus and device in ("auto", "cuda"):
            gtype = _gpu_type(res)
            if per == "accelerator-type":
                found.setdefault(gtype, FleetDevice(gtype, "cuda", accelerator_type=gtype))
            elif per == "node":
                found[f"{gtype}-{short}"] = FleetDevice(f"{gtype}-{short}", "cuda", accelerator_type=gtype, node_id=nid)
            else:
                for i in range(gpus):
                    label = f"{gtype}-{short}-gpu{i}"
                    found[label] = FleetDevice(label, "cuda", accelerator_type=gtype, node_id=nid, gpu_index=i)
    return list(found.values())


def select(devices: list[FleetDevice], wanted: list[str] | None) -> list[FleetDevice]:
    """--devices: keep the named devices (by label or folder name); an unknown name is bad input."""
    if not devices:
        raise BadInput("fleet: no device in the cluster; start nodes with GPUs, or CPU nodes with "
                       f"--resources '{{\"{RESOURCE_PREFIX}<label>\": 1}}'")
    if not wanted:
        return devices
    by_name = {d.label: d for d in devices} | {d.folder: d for d in devices}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise BadInput(f"--devices: no device {unknown[0]!r} in the cluster; it has {', '.join(d.label for d in devices)}")
    return list(dict.fromkeys(by_name[w] for w in wanted))


def holders(nodes: list[dict], dev: FleetDevice, exclude: set[str] = frozenset()) -> list[str]:
    """Live nodes (ids) that can run the device's task."""
    out = []
    for n in alive(nodes):
        nid, res = n["NodeID"], n.get("Resources", {})
        if nid in exclude or (dev.node_id and nid != dev.node_id):
            continue
        if dev.kind == "cpu" and res.get(dev.resource, 0) >= 1:
            out.append(nid)
        elif dev.kind == "cuda" and res.get("GPU", 0) >= 1 and (
                dev.accelerator_type == "GPU" or f"accelerator_type:{dev.accelerator_type}" in res):
            out.append(nid)
    return out
