"""Kubernetes resource quantities, read purely (as k8s.io/apimachinery's ParseQuantity does)."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from redkube.kubernetes.clusters import memory_bytes, parse_quantity
from redkube.kubernetes.resources import QUANTITY_PATTERN


@pytest.mark.parametrize(
    ("quantity", "value"),
    [
        ("1Ki", 1024),
        ("1Mi", 1024**2),
        ("1Gi", 1024**3),
        ("2Ti", 2 * 1024**4),
        ("1Pi", 1024**5),
        ("1Ei", 1024**6),
        ("1k", 1000),
        ("1M", 10**6),
        ("1G", 10**9),
        ("3T", 3 * 10**12),
        ("1P", 10**15),
        ("1E", 10**18),
        ("128974848", 128974848),
        (128974848, 128974848),
        ("1.5Gi", 1610612736),
        ("0.5Mi", 524288),
        (".5Gi", 536870912),
        ("1.", 1),
        ("129e6", 129_000_000),
        ("129E6", 129_000_000),
        ("1e-3", Fraction(1, 1000)),
        ("500m", Fraction(1, 2)),
        ("250u", Fraction(1, 4000)),
        ("+1Ki", 1024),
        ("-1Ki", -1024),
        ("0", 0),
    ],
)
def test_quantities(quantity: str | int, value: Fraction | int) -> None:
    assert parse_quantity(quantity) == value
    if isinstance(quantity, str):
        assert re.match(QUANTITY_PATTERN, quantity), "the CRD's pattern accepts it too"


@pytest.mark.parametrize(
    "quantity", ["", "lots", "Gi", "1GiB", "1K", "1gi", "1 Gi", " 1Gi", "1.5.Gi", "1e1.5", "0x10"]
)
def test_not_quantities(quantity: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(quantity)


def test_memory_is_rounded_up_to_whole_bytes() -> None:
    assert memory_bytes("1.5Gi") == 1610612736
    assert memory_bytes("1500m") == 2
    assert memory_bytes("1.1") == 2
    assert memory_bytes(1024) == 1024
