#!/usr/bin/env python3
"""TensorFlow and Keras engines, plain or with XLA (--xla-enabled)."""

import sys

from _common import run_engines


def flags(p):
    p.add_argument("--xla-enabled", action="store_true", help="benchmark tf-xla and keras-xla instead of tf and keras")


if __name__ == "__main__":
    sys.exit(run_engines(lambda a: "tf-xla,keras-xla" if a.xla_enabled else "tf,keras", __doc__, extra_flags=flags))
