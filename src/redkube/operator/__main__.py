"""`python -m redkube.operator [--namespace NS ...] [--kubeconfig PATH]`: run the operator."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import kopf


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redkube.operator", description=__doc__)
    parser.add_argument("--namespace", action="append", default=[], help="watch only these")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, or in-cluster")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import redkube.operator.handlers  # noqa: F401  (registers the handlers with kopf)

    kopf.run(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
