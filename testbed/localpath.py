"""Dynamic volumes for real test-bed nodes: rancher's local-path-provisioner (the image
testbed/build-images.sh builds from testbed/build-local-path.sh's binary) as a Deployment, and
the default StorageClass `standard` naming it.

    localpath.install(cp, {"node-1": workdir / "volumes" / "node-1", ...})

How a claim gets a volume: the scheduler picks a node for the claim's first Pod
(WaitForFirstConsumer); the provisioner runs a helper Pod (busybox) on that node which creates
`<node's directory>/pvc-<uid>_<namespace>_<claim>`, then creates a PV there with node affinity to
that node: a `local` one (the class's defaultVolumeType), which, unlike a `hostPath` one, gets
the Pod's fsGroup, as a cloud disk does. Deleting the claim deletes the PV (reclaim policy
Delete) after a helper Pod removed the directory.

The nodes share this machine's filesystem, so each node gets its own directory (`paths`): a
volume is then found only on its node, as on real machines. The setup script also makes the
directory writable by anyone (mode 0777, as upstream's does), for claims that ask for hostPath.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from string import Template

from testbed.controlplane import ControlPlane

IMAGE = "docker.io/rancher/local-path-provisioner:v0.0.30"
HELPER_IMAGE = "busybox:1.36"
NAMESPACE = "local-path-storage"
PROVISIONER = "rancher.io/local-path"
STORAGE_CLASS = "standard"
CONFIG_MAP = "local-path-config"
SERVICE_ACCOUNT = "local-path-provisioner-service-account"
READY_TIMEOUT_SECONDS = 120

MANIFEST = Template("""\
apiVersion: v1
kind: Namespace
metadata: {name: $namespace}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: $service_account, namespace: $namespace}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: local-path-provisioner-role, namespace: $namespace}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: local-path-provisioner-bind, namespace: $namespace}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: local-path-provisioner-role}
subjects: [{kind: ServiceAccount, name: $service_account, namespace: $namespace}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: local-path-provisioner-role}
rules:
- apiGroups: [""]
  resources: [nodes, persistentvolumeclaims, configmaps, pods, pods/log]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: local-path-provisioner-bind}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: local-path-provisioner-role}
subjects: [{kind: ServiceAccount, name: $service_account, namespace: $namespace}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: local-path-provisioner, namespace: $namespace}
spec:
  replicas: 1
  selector: {matchLabels: {app: local-path-provisioner}}
  template:
    metadata: {labels: {app: local-path-provisioner}}
    spec:
      serviceAccountName: $service_account
      containers:
      - name: local-path-provisioner
        image: $image
        imagePullPolicy: Never
        command: [local-path-provisioner, --debug, start, --config, /etc/config/config.json]
        env:
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - {name: CONFIG_MOUNT_PATH, value: /etc/config/}
        volumeMounts: [{name: config, mountPath: /etc/config/}]
      volumes:
      - name: config
        configMap: {name: $config_map}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $storage_class
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
    defaultVolumeType: local
provisioner: $provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
""")

# Run by the helper Pod on the volume's node, with the node's directory mounted at the same path
# and VOL_DIR the volume's directory.
SETUP = """\
#!/bin/sh
set -eu
mkdir -m 0777 -p "$VOL_DIR"
"""
TEARDOWN = """\
#!/bin/sh
set -eu
rm -rf "$VOL_DIR"
"""
# The provisioner adds the name suffix, namespace, node, command, volumes and tolerations.
HELPER_POD = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: helper-pod}}
spec:
  priorityClassName: system-node-critical
  containers:
  - {{name: helper-pod, image: "{HELPER_IMAGE}", imagePullPolicy: IfNotPresent}}
"""


def config_map(paths: Mapping[str, Path]) -> dict[str, object]:
    """The provisioner's ConfigMap: `paths` (node name -> directory) as its nodePathMap; a node
    not named there gets no volumes."""
    for node, path in paths.items():
        if not path.is_absolute():
            raise ValueError(f"local-path: {node}'s directory {path} is not absolute")
    if len(set(paths.values())) != len(paths):
        raise ValueError(f"local-path: nodes share a directory: {dict(paths)}")
    config = {"nodePathMap": [{"node": node, "paths": [str(path)]} for node, path in paths.items()]}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE},
        "data": {
            "config.json": json.dumps(config, indent=2),
            "setup": SETUP,
            "teardown": TEARDOWN,
            "helperPod.yaml": HELPER_POD,
        },
    }


def manifest(paths: Mapping[str, Path]) -> str:
    text = MANIFEST.substitute(
        namespace=NAMESPACE, service_account=SERVICE_ACCOUNT, image=IMAGE,
        config_map=CONFIG_MAP, storage_class=STORAGE_CLASS, provisioner=PROVISIONER,
    )  # fmt: skip
    # A JSON document is YAML too: no indentation to get right for the embedded files.
    return f"{text}---\n{json.dumps(config_map(paths), indent=2)}\n"


def install(cp: ControlPlane, paths: dict[str, Path]) -> None:
    """Apply the provisioner with `paths` (node name -> host directory, one per node) and the
    default StorageClass `standard`; return once the provisioner is available. A `standard`
    of another provisioner must be deleted first (a StorageClass's provisioner is immutable)."""
    cp.kubectl("apply", "-f", "-", input=manifest(paths))
    cp.kubectl(
        "rollout", "status", "deployment/local-path-provisioner", "-n", NAMESPACE,
        f"--timeout={READY_TIMEOUT_SECONDS}s", timeout=READY_TIMEOUT_SECONDS + 30,
    )  # fmt: skip


__all__ = ["IMAGE", "NAMESPACE", "PROVISIONER", "STORAGE_CLASS", "install", "manifest"]
