"""Profiles are read once per process and shared: every SNMP collector instance asks for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.snmp import SnmpCollector
from collectors.snmp.profile import ProfileError, ProfileSet

PROFILE = "name: {name}\ntables:\n  - id: t\n    measurement: snmp_cpu\n    columns: {{load: 1.3.6.1.9}}\n"


def test_collectors_share_one_profile_set() -> None:
    assert ProfileSet.load() is ProfileSet.load()
    assert SnmpCollector().profiles is SnmpCollector({"profile": "cisco_ios"}).profiles


def test_each_directory_has_its_own_set(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "a.yaml").write_text(PROFILE.format(name="a"), encoding="utf-8")
    (tmp_path / "two" / "b.yaml").write_text(PROFILE.format(name="b"), encoding="utf-8")

    assert set(ProfileSet.load(tmp_path / "one").profiles) == {"a"}
    assert set(ProfileSet.load(tmp_path / "two").profiles) == {"b"}
    assert ProfileSet.load(tmp_path / "one") is ProfileSet.load(tmp_path / "one")


def test_a_directory_that_failed_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("name: a\nsurprise: 1\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="surprise"):
        ProfileSet.load(tmp_path)

    path.write_text(PROFILE.format(name="a"), encoding="utf-8")
    assert set(ProfileSet.load(tmp_path).profiles) == {"a"}


def test_a_rewritten_profile_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(PROFILE.format(name="a"), encoding="utf-8")
    before = ProfileSet.load(tmp_path)

    path.write_text(PROFILE.format(name="a").replace("snmp_cpu", "snmp_cpu_total"), encoding="utf-8")
    after = ProfileSet.load(tmp_path)

    assert [t.measurement for t in before.get("a").tables] == ["snmp_cpu"]
    assert [t.measurement for t in after.get("a").tables] == ["snmp_cpu_total"]


def test_the_shared_set_cannot_be_changed_by_one_collector() -> None:
    profiles = ProfileSet.load()
    with pytest.raises(TypeError):
        profiles.profiles["generic"] = profiles.get("cisco_ios")  # type: ignore[index]
