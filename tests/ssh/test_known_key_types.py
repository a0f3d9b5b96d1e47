"""KnownHosts.key_types (added for the SSH collectors): the types recorded for one host:port."""

from __future__ import annotations

from pathlib import Path

from agent.api.hostkeys import KnownHosts


def test_the_types_recorded_for_a_host_and_port_only(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    assert known.key_types("127.0.0.1", 2201) == []  # no file yet
    known.check("127.0.0.1", 2201, "ecdsa-sha2-nistp256", b"key-of-hv1")
    known.check("127.0.0.1", 2202, "ssh-ed25519", b"key-of-hv2")
    known.check("10.0.0.5", 22, "ssh-rsa", b"key-of-a-router")
    assert known.key_types("127.0.0.1", 2201) == ["ecdsa-sha2-nistp256"]
    assert known.key_types("10.0.0.5", 22) == ["ssh-rsa"]
    assert known.key_types("127.0.0.1", 22) == []
