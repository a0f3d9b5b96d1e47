"""The known_hosts every SSH plugin keeps: first contact recorded, a change refused."""

import os

import pytest

from agent.api.hostkeys import HostKeyChanged, KnownHosts, fingerprint


def test_first_contact_is_recorded_then_matched(tmp_path) -> None:
    known = KnownHosts(tmp_path / "ssh" / "known_hosts")
    assert known.check("127.0.0.1", 2222, "ssh-ed25519", b"key-one") is True
    assert known.check("127.0.0.1", 2222, "ssh-ed25519", b"key-one") is False
    line = (tmp_path / "ssh" / "known_hosts").read_text()
    assert line.startswith("[127.0.0.1]:2222 ssh-ed25519 ")
    assert os.stat(tmp_path / "ssh" / "known_hosts").st_mode & 0o777 == 0o600


def test_a_changed_key_is_refused_naming_both_fingerprints(tmp_path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    known.check("sw-1", 22, "ssh-rsa", b"old")
    with pytest.raises(HostKeyChanged) as refused:
        known.check("sw-1", 22, "ssh-rsa", b"new")
    assert fingerprint(b"old") in str(refused.value) and fingerprint(b"new") in str(refused.value)
    # another key type for a known host is a change as well
    with pytest.raises(HostKeyChanged):
        known.check("sw-1", 22, "ssh-ed25519", b"other")
    # the refused keys were not recorded
    assert known.check("sw-1", 22, "ssh-rsa", b"old") is False


def test_openssh_lines_written_by_hand_are_read(tmp_path) -> None:
    path = tmp_path / "known_hosts"
    import base64
    path.write_text(f"# seeded with ssh-keyscan\nhv1,10.0.0.5 ssh-ed25519 {base64.b64encode(b'k').decode()} c\n")
    assert KnownHosts(path).check("hv1", 22, "ssh-ed25519", b"k") is False
    assert KnownHosts(path).check("10.0.0.5", 22, "ssh-ed25519", b"k") is False
