"""`redkube render -f cluster.yaml`: every object the operator would create, as YAML."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import Any

import yaml

from redkube.cli.exits import ExitStatus, UserError
from redkube.kubernetes.building import build_all
from redkube.kubernetes.clusters import parse

PASSWORD_BYTES = 24


def _documents(source: str) -> list[Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        raise UserError(f"cannot read {source}: {error.strerror}") from error
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise UserError(f"{source} is not valid YAML: {problem}{where}") from error


def render(args: argparse.Namespace) -> ExitStatus:
    documents = _documents(args.file)
    clusters = [d for d in documents if isinstance(d, dict) and d.get("kind") == "RedisCluster"]
    if not clusters:
        raise UserError(f"{args.file} holds no RedisCluster (kind: RedisCluster)")
    objects = []
    for document in clusters:
        if document.get("apiVersion") != "redkube.io/v1alpha1":
            raise UserError(
                f"apiVersion must be redkube.io/v1alpha1 (got {document.get('apiVersion')!r})"
            )
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        objects += build_all(parse(document), password)
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False))
    return ExitStatus.SUCCESS
