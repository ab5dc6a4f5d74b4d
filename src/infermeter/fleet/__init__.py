"""`infermeter fleet`: the ordinary sweep on every device of a Ray cluster, results written on the caller.

One Ray task per distinct device runs the same sweep as `infermeter run` in its own process on its node
(isolation, the correctness gate and telemetry unchanged); rows stream back to the caller as each cell
ends and land in `<results>/<model>/<device>/` through the same writer a local run uses.
"""

from __future__ import annotations

INSTALL_HINT = 'infermeter fleet needs Ray: pip install -e ".[fleet]"'
RESOURCE_PREFIX = "infermeter_device:"
PER_CHOICES = ("accelerator-type", "node", "gpu")
