"""Bad vendor answers fuzzed into every parser the collectors read them with: Meraki, Omada, Veeam,
Microsoft 365 (Graph), the SSH hosts (Linux, Windows, Hyper-V) and Cisco CLI. Garbage,
truncated or wrong-typed answers -> values or None, or the parser's own refusal naming what it could
not read (Unparsable, BadAnswer, ParseError) — never another exception, which would fail the whole
poll with a traceback instead of a clear status.

vSphere is not here: its evaluator reads pyvmomi's typed objects, which pyvmomi's SOAP deserialiser
builds or refuses; fuzzing it means fuzzing SOAP bodies through pyvmomi (not done yet)."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from collectors.cisco_cli import parse as cisco
from collectors.m365 import parse as m365
from collectors.meraki import parse as meraki
from collectors.omada import models as omada
from collectors.ssh import hyperv, linux, windows
from collectors.ssh.client import Result
from collectors.ssh.host import Unparsable
from collectors.veeam import models as veeam
from collectors.veeam.client import BadAnswer
from tests.drills.fuzzing import FUZZ, hostile_text, json_values, only_raises


def keys_read_by(module) -> list[str]:
    """The quoted names a parser module mentions: the keys it reads, as candidates for the fuzzer."""
    source = Path(inspect.getfile(module)).read_text()
    return sorted(set(re.findall(r"[\"']([A-Za-z_][A-Za-z0-9_.]{1,40})[\"']", source)))


def objects_of(module) -> st.SearchStrategy:
    keys = st.sampled_from(keys_read_by(module))
    obj = st.dictionaries(keys | hostile_text, json_values | st.dictionaries(keys, json_values, max_size=4),
                          max_size=12)
    return obj | json_values


def answers_of(module) -> st.SearchStrategy:
    """What a JSON API answers: a list of the module's objects, one object, or any JSON."""
    return st.lists(objects_of(module), max_size=4) | objects_of(module)


@FUZZ
@given(answers_of(meraki), objects_of(meraki))
def test_meraki_parsers(answer, item) -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    for parser in (meraki.networks, meraki.device_statuses, meraki.wireless_clients, meraki.appliance_uplinks,
                   meraki.loss_latency, meraki.neighbors):
        parser(answer)
    for device in meraki.device_statuses(answer).items:
        meraki.device_fields(device, None, now)
    meraki.status_counts(meraki.device_statuses([item]).items)
    meraki.timestamp(item)


@FUZZ
@given(objects_of(m365), objects_of(m365))
def test_m365_parsers(item, organization) -> None:
    if isinstance(item, dict):
        for parser in (m365.service, m365.issue, m365.license_, m365.security_alert):
            parser(item)
    if isinstance(organization, dict):
        m365.sync(organization, 1_800_000_000.0)
    m365.epoch(item)


@FUZZ
@given(objects_of(omada), st.lists(objects_of(omada), max_size=4))
def test_omada_parsers(raw, clients) -> None:
    if isinstance(raw, dict):
        omada.device(raw)
        omada.uplink(omada.wan_ports(raw))
        omada.tunnel(raw)
        omada.newest(raw)
    omada.ssid_counts([c for c in clients if isinstance(c, dict)])


@FUZZ
@given(answers_of(veeam))
def test_veeam_parsers(items) -> None:
    # the client hands over the objects of `data` only (a non-object is its own BadAnswer)
    items = [item for item in (items if isinstance(items, list) else [items]) if isinstance(item, dict)]
    for model in (veeam.JobState, veeam.Session, veeam.Repository):
        only_raises(lambda model=model: veeam.parse_all(model, items, "/api/v1/fuzz"), BadAnswer)


SSH_PARSERS = [
    linux.parse_load, linux.parse_meminfo, linux.parse_df, linux.parse_failed_units, linux.parse_docker_ps,
    linux.parse_pg_isready, linux.parse_apt_upgrade,
    windows.parse_services(["Spooler", "NTDS"]), windows.parse_reboot, windows.parse_updates(lambda: 1.8e9),
    windows.parse_ad_replication(lambda: 1.8e9), windows.parse_time,
    windows.parse_events(windows.EventOptions(watch=[{"name": "disk", "source": "Disk", "ids": [7]}])),
    hyperv.parse_vmhost, hyperv.parse_vms, hyperv.parse_replication(lambda: 1.8e9),
]
ssh_keys = st.sampled_from(sorted({*keys_read_by(windows), *keys_read_by(hyperv)}))
powershell_json = st.recursive(
    st.dictionaries(ssh_keys | hostile_text, json_values, max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ssh_keys, inner, max_size=4),
    max_leaves=12,
).map(json.dumps)
outputs = powershell_json | hostile_text | st.lists(
    st.sampled_from(["0.52 0.58 0.59 1/467 12345", "4", "MemTotal: 1 kB", "/dev/sda1 100 50 50 50% /", "", "x y",
                     "-1", "nan", "1e309", "9" * 400]) | hostile_text, max_size=8
).map("\n".join)
# what a broken shell, a truncating channel or a hostile host answers
outputs = outputs | st.tuples(outputs, st.integers(0, 200)).map(lambda pair: pair[0][: pair[1]])


@FUZZ
@given(st.sampled_from(SSH_PARSERS), outputs, st.sampled_from([0, 1, 3, 255]))
def test_ssh_host_parsers(parser, stdout: str, status: int) -> None:
    only_raises(lambda: parser(Result(status, stdout, "", 0.1)), Unparsable)


cisco_lines = st.lists(
    st.sampled_from(["Cisco IOS XE Software, Version 17.09.04a", "uptime is 2 weeks", "Gi1/0/1  uplink  connected"
                     " 1  a-full a-1000 10/100/1000BaseTX", "SW  PID   Serial#  Status  Sys Pwr  PoE Pwr  Watts",
                     "FAN 1 is OK", "SYSTEM INLET  : 30 Celsius, GREEN", "Power Supply 1 is OK", "----"])
    | hostile_text, max_size=10,
).map("\n".join)


@FUZZ
@given(st.sampled_from([cisco.show_version, cisco.show_environment_power, cisco.show_environment_all,
                        cisco.show_interfaces_status]), cisco_lines)
def test_cisco_cli_parsers(parser, text: str) -> None:
    only_raises(lambda: parser(text), cisco.ParseError)
