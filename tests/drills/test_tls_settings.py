"""TLS verification is on by default and only an explicit per-target setting turns it off, which is
logged when the plugin is built (at start-up). The http probe did not say so."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.api import CollectorContext
from probes.http import HttpOptions, HttpProbe


def context(tmp_path: Path) -> CollectorContext:
    return CollectorContext(client="c", device="portal", state_dir=tmp_path, secret=lambda ref: "",
                            clock=lambda: 0.0)


def test_the_http_probe_verifies_by_default_and_logs_when_told_not_to(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    assert HttpOptions(url="https://portal.example.org/").verify_tls is True
    HttpProbe(HttpOptions(url="https://portal.example.org/"), context(tmp_path))
    assert not caplog.records
    HttpProbe(HttpOptions(url="https://portal.example.org/login?token=x", verify_tls=False), context(tmp_path))
    (record,) = caplog.records
    assert "c/portal" in record.getMessage() and "verify_tls: false" in record.getMessage()
    assert "token=x" not in record.getMessage()  # the URL as shown, not its query
