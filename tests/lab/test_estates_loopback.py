"""A lab estate never points outside loopback: every device address, every URL, at its defaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from lab.estate import ESTATES_DIR, LAB_SECRETS, Estate, expand, is_loopback

ESTATES = sorted(p.stem for p in ESTATES_DIR.glob("*.yaml") if p != LAB_SECRETS)


def urls(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str) and "://" in node:
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from urls(value, f"{where}.{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from urls(value, f"{where}[{n}]")


@pytest.mark.parametrize("name", ESTATES)
def test_every_address_and_url_is_loopback(name: str) -> None:

    estate = Estate.load(name, environ={})
    outside = [f"{d.key}: {d.address}" for d in estate.devices() if not is_loopback(expand(d.address or "", {}))]
    raw = yaml.safe_load((ESTATES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    outside += [
        f"{where}: {url}" for where, url in urls(raw, name) if not is_loopback(urlsplit(expand(url, {})).hostname or "")
    ]
    assert outside == []
    assert any(True for _ in estate.devices())
