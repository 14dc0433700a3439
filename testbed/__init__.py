"""A real Kubernetes control plane on loopback, for tests. Standalone: imports only the stdlib."""

from testbed.controlplane import ControlPlane, ControlPlaneError

__all__ = ["ControlPlane", "ControlPlaneError"]
