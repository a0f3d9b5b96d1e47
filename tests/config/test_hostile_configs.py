"""Files an operator should never have written, and command lines with secrets in them (issue 7,
items 9 and 10).

Whatever the config or secrets file holds (another encoding, binary bytes, 5,000 levels, a YAML
"billion laughs", 17 MB, a directory), `vigie check-config` and `vigie run` end with one clear
error naming the file (and the line when there is one) and exit 2, never a traceback or a hang.
Every way `vigie collect` can be misused gets one line and exit 64 (usage) or 2 (config), and no
output of any `vigie collect` holds a planted community or key.
"""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.cli import EXIT_CONFIG, EXIT_USAGE, main
from agent.config.loader import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES

# the alias bomb hung both commands at 100 % CPU: a regression must fail, not stall the suite
pytestmark = pytest.mark.timeout(60)

COMMUNITY = "PlantedCommunity-7f3a"
AUTH_KEY = "PlantedAuthKey-91c2"
PRIV_KEY = "PlantedPrivKey-55d0"
PLANTED = (COMMUNITY, AUTH_KEY, PRIV_KEY)

SECRETS = f"""\
sw: {{community: {COMMUNITY}}}
v3: {{user: noc, auth_protocol: sha, auth_key: {AUTH_KEY}, priv_protocol: aes, priv_key: {PRIV_KEY}}}
"""

CONFIG = """\
clients:
  - name: acme
    display_name: Société Acme
    sites:
      - name: hq
        devices:
          - {name: sw1, address: 127.0.0.1, port: PORT, credentials: sw, collectors: {snmp: }}
          - {name: fw1, address: 127.0.0.1, port: PORT, credentials: v3, collectors: {snmp: {version: "3"}}}
"""

COMMANDS = [["check-config"], ["run", "--duration", "0.1"]]
Write = Callable[..., Path]


def config_text(port: int = 1161) -> str:
    return CONFIG.replace("PORT", str(port))


def run_vigie(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit status and everything printed (stdout and stderr)."""
    code = main(list(argv))
    said = capsys.readouterr()
    return code, said.out + said.err


def refused(capsys: pytest.CaptureFixture[str], command: list[str], config: Path, secrets: Path) -> str:
    """Run ``command`` on ``config``; check it refused the file cleanly; return what it said."""
    argv = [command[0], *(["--config"] if command[0] == "run" else []), str(config), *command[1:]]
    code, said = run_vigie(capsys, *argv, "--secrets", str(secrets))
    assert code == EXIT_CONFIG, said
    assert "Traceback" not in said
    return said


@pytest.fixture
def secrets(write: Write) -> Path:
    return write("secrets.yaml", SECRETS)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback UDP port where nothing ever answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- item 9: the config file ---------------------------------------------------------------------


def _billion_laughs() -> str:
    lines = ['x-l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x-l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


# name -> (file content, what the error must say)
HOSTILE_CONFIGS: dict[str, tuple[bytes, str]] = {
    "latin-1": (
        config_text().encode("latin-1"),
        f": not UTF-8 (byte 0xE9 at offset {config_text().index('é')}, line 3): save it as UTF-8",
    ),
    "utf-16 without a BOM": (config_text().encode("utf-16-le"), ": NUL byte at offset 1, line 1: not a UTF-8 text"),
    "utf-32": (config_text().encode("utf-32"), ": UTF-32 text: save it as UTF-8"),
    "binary": (bytes(range(256)) * 4, ": NUL byte at offset 0, line 1: not a UTF-8 text file"),
    "binary without a NUL": (bytes(range(1, 256)) * 4, ": not UTF-8 (byte 0x80 at offset 127, line 2)"),
    "control character": (b"clients: []\nagent: {state_dir: \x01}\n", ":2: invalid YAML: control character U+0001"),
    "5,000 levels of lists": (
        b"clients: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        f":1: YAML nested deeper than {MAX_DEPTH} levels",
    ),
    "5,000 levels of mappings": (
        b"clients:\n  - name: " + b"{a: " * 5000 + b"1" + b"}" * 5000 + b"\n",
        f":2: YAML nested deeper than {MAX_DEPTH}",
    ),
    "billion laughs": (_billion_laughs().encode(), f":6: YAML aliases expand beyond {MAX_ALIAS_NODES:,} nodes"),
    "billion laughs through merge keys": (
        (
            "x-a: &a {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10}\n"
            + "".join(f"x-{i}: &m{i} [{', '.join(['*a' if i == 0 else f'*m{i - 1}'] * 10)}]\n" for i in range(6))
        ).encode(),
        f":5: YAML aliases expand beyond {MAX_ALIAS_NODES:,} nodes",
    ),
    "an alias inside its own node": (b"x-a: &a {b: *a}\n", ":1: alias *a is inside the node it names"),
    "an integer of 5,000 digits": (b"agent:\n  threads: " + b"9" * 5000 + b"\n", ":2: unreadable value: Exceeds"),
    "a date that does not exist": (
        b"clients:\n  - name: acme\n    display_name: Acme\n    holidays: [2024-13-45]\n",
        ":4: unreadable value: month must be in 1..12",
    ),
    "a list as a key": (b"clients: []\n? [a, b]\n: 1\n", ":2: invalid YAML: a key must be a plain value"),
    "a mapping as a key": (b"clients: []\n? {a: 1}\n: 1\n", ":2: invalid YAML: a key must be a plain value"),
    "interval_s: true": (
        config_text().replace("port: 1161, credentials: sw", "port: 1161, interval_s: true, credentials: sw").encode(),
        ":7: clients[acme].sites[hq].devices[sw1].interval_s: expected a number of seconds, not a boolean",
    ),
    "a rule's for_s: true": (
        (config_text() + "rules:\n  - {name: r, measurement: collection, when: 'status > 1', for_s: true}\n").encode(),
        ":10: rules[r].for_s: Input should be a valid number",
    ),
}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("name", list(HOSTILE_CONFIGS))
def test_a_hostile_config_is_one_clear_error(tmp_path, secrets, capsys, command, name) -> None:
    content, expected = HOSTILE_CONFIGS[name]
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    said = refused(capsys, command, config, secrets)
    assert f"{config}{expected}" in said


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(lambda text: text.encode("utf-8"), id="utf-8"),
        pytest.param(lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"), id="utf-8 with a BOM"),
        pytest.param(lambda text: text.encode("utf-16"), id="utf-16 with its BOM"),
        pytest.param(lambda text: text.encode("utf-16-be").join([b"\xfe\xff", b""]), id="utf-16 big-endian"),
    ],
)
def test_utf8_and_utf16_with_a_bom_are_read(tmp_path, secrets, capsys, encoded) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(encoded(config_text()))
    code, said = run_vigie(capsys, "check-config", str(config), "--secrets", str(secrets))
    assert code == 0, said
    assert "OK — 1 client(s), 2 poll(s)" in said


def test_legitimate_anchors_are_far_below_the_alias_bound(tmp_path, secrets, capsys) -> None:
    # 400 devices sharing one set of options through a merge key: what real estates do
    devices = "".join(
        f"          - {{<<: *dev, name: sw{i}, address: 127.0.0.{i % 250 + 1}}}\n" for i in range(400)
    )
    text = textwrap.dedent("""\
        x-device: &dev {port: 1161, credentials: sw, collectors: {snmp: {retries: 1, timeout_s: 2}}}
        clients:
          - name: acme
            display_name: Acme
            sites:
              - name: hq
                devices:
        """) + devices
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    code, said = run_vigie(capsys, "check-config", str(config), "--secrets", str(secrets))
    assert code == 0, said
    assert "400 poll(s)" in said


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_file_over_the_size_bound_is_refused_unread(tmp_path, secrets, capsys, command) -> None:
    config = tmp_path / "config.yaml"
    with config.open("wb") as stream:
        stream.write(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    said = refused(capsys, command, config, secrets)
    assert f"{config}: larger than 16 MiB: not a configuration file" in said


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_directory_or_an_empty_path_is_not_a_config(tmp_path, secrets, capsys, command) -> None:
    said = refused(capsys, command, tmp_path, secrets)
    assert f"{tmp_path}: is a directory, not a YAML file" in said
    said = refused(capsys, command, Path(""), secrets)
    assert ".: is a directory, not a YAML file" in said


def test_the_read_only_views_refuse_a_hostile_config_too(tmp_path, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(_billion_laughs().encode())
    code, said = run_vigie(capsys, "alerts", "--config", str(config))
    assert code == EXIT_CONFIG, said
    assert f"{config}:6: YAML aliases expand beyond" in said and "Traceback" not in said


# -- item 9: the secrets file --------------------------------------------------------------------

# name -> (content, or None for a directory, what the error must say)
HOSTILE_SECRETS: dict[str, tuple[bytes | None, str]] = {
    "a directory": (None, ": is a directory, not a secrets file"),
    "latin-1": (f"sw: {{community: caf\xe9-{COMMUNITY}}}\n".encode("latin-1"), ": not UTF-8 (offset 19, line 1)"),
    "a list": (b"- sw\n- v3\n", ": expected a mapping of secret name -> value"),
    "a scalar": (b"just a string\n", ": expected a mapping of secret name -> value"),
    "5,000 levels": (b"sw: " + b"[" * 5000 + b"]" * 5000 + b"\n", f":1: YAML nested deeper than {MAX_DEPTH}"),
    "billion laughs": (_billion_laughs().encode(), f":6: YAML aliases expand beyond {MAX_ALIAS_NODES:,} nodes"),
    "binary": (bytes(range(256)), ": NUL byte at offset 0, line 1"),
    "binary without a NUL": (bytes(range(1, 256)), ": not UTF-8 (offset 127, line 2)"),
    "invalid YAML": (f"sw: {{community: {COMMUNITY}\n".encode(), ":2: invalid YAML"),
}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("name", list(HOSTILE_SECRETS))
def test_a_hostile_secrets_file_is_one_clear_error(tmp_path, write, capsys, command, name) -> None:
    content, expected = HOSTILE_SECRETS[name]
    config = write("config.yaml", config_text())
    secrets = tmp_path / "secrets.yaml"
    if content is None:
        secrets.mkdir(mode=0o755)  # the mode check must not hide what is wrong
    else:
        secrets.write_bytes(content)
        secrets.chmod(0o600)
    said = refused(capsys, command, config, secrets)
    assert f"{secrets}{expected}" in said
    assert not any(secret in said for secret in PLANTED)
    assert "0xE9" not in said  # a secrets file's bytes are secrets


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_missing_secrets_file_is_one_clear_error(tmp_path, write, capsys, command) -> None:
    config = write("config.yaml", config_text())
    said = refused(capsys, command, config, tmp_path / "nowhere.yaml")
    assert f"{tmp_path / 'nowhere.yaml'}: cannot read secrets file: No such file or directory" in said
    said = refused(capsys, command, config, config / "secrets.yaml")  # under a file, not a directory
    assert f"{config / 'secrets.yaml'}: cannot read secrets file: Not a directory" in said


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_unreadable_secrets_file_is_one_clear_error(write, capsys, command) -> None:
    config = write("config.yaml", config_text())
    secrets = write("secrets.yaml", SECRETS, mode=0o000)
    said = refused(capsys, command, config, secrets)
    assert f"{secrets}: cannot read: Permission denied" in said


# -- item 9: booleans and numbers where the kernel schema wants something else -------------------

@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(("port: 1161, credentials: sw", "port: true, credentials: sw"), id="device port: true"),
        pytest.param(("clients:", "agent: {threads: true}\nclients:"), id="agent threads: true"),
        pytest.param(("display_name: Société Acme", "display_name: Acme\n    service_hours: {start: 8}"),
                     id="service_hours start: 8"),
    ],
)
def test_a_number_typed_as_something_else_is_refused(write, secrets, capsys, edit) -> None:
    config = write("config.yaml", config_text().replace(*edit))
    refused(capsys, ["check-config"], config, secrets)


# -- item 10: vigie collect ----------------------------------------------------------------------

# Every misuse of a URL: (URL, what the one line must say after the redacted URL)
BAD_URLS = [
    (f"snmpx://{COMMUNITY}@127.0.0.1:1161", "snmpx://***@127.0.0.1:1161: no collector takes snmpx:// URLs"),
    (f"{COMMUNITY}@127.0.0.1", "***@127.0.0.1: not a URL (SCHEME://..."),
    (f"snmp://{COMMUNITY}:{AUTH_KEY}@127.0.0.1:1161", "snmp://***@127.0.0.1:1161: snmp:// takes COMMUNITY@HOST"),
    (f"snmp://{COMMUNITY}\\x:{AUTH_KEY}@127.0.0.1", "snmp://***@127.0.0.1: snmp:// takes COMMUNITY@HOST"),
    (f"snmp://{COMMUNITY}@", "snmp://***@: no host"),
    (f"snmp://{COMMUNITY}@127.0.0.1:99999", "snmp://***@127.0.0.1:99999: Port out of range"),
    (f"snmp://{COMMUNITY}@127.0.0.1?version=7", "snmp://***@127.0.0.1?version=7: version: Input should be '1'"),
    (f"snmp://{COMMUNITY}@127.0.0.1?profile=nosuch", "snmp://***@127.0.0.1?profile=nosuch: profile: unknown SNMP"),
    (f"snmp://{COMMUNITY}@127.0.0.1?bogus=1", "snmp://***@127.0.0.1?bogus=1: unknown parameter(s) bogus"),
    (f"snmpv3://noc:{AUTH_KEY}:{PRIV_KEY}@127.0.0.1?auth=MD9", "snmpv3://***@127.0.0.1?auth=MD9: auth_protocol: 'MD9'"),
    (f"snmpv3://noc:{AUTH_KEY}:{PRIV_KEY}@127.0.0.1?priv=XYZ", "snmpv3://***@127.0.0.1?priv=XYZ: priv_protocol: 'XYZ'"),
    (f"snmpv3://noc:{AUTH_KEY}:{PRIV_KEY}:x@127.0.0.1", "snmpv3://***@127.0.0.1: snmpv3:// needs USER"),
    (f"snmpv3://:{AUTH_KEY}@127.0.0.1", "snmpv3://***@127.0.0.1: snmpv3:// needs USER"),
]


@pytest.mark.parametrize(("url", "expected"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_a_bad_url_is_one_usage_line_without_its_secrets(capsys, url, expected) -> None:
    code, said = run_vigie(capsys, "collect", url)
    assert code == EXIT_USAGE, said
    lines = [line for line in said.splitlines() if not line.startswith("warning: ")]  # a broken plugin's
    assert len(lines) == 1 and lines[0].startswith(f"vigie collect: {expected}"), said
    assert not any(secret in said for secret in PLANTED), said


@pytest.mark.parametrize("timeout", ["-5", "0", "nan"])
def test_a_bad_timeout_is_a_usage_error(capsys, timeout) -> None:
    code, said = run_vigie(capsys, "collect", f"snmp://{COMMUNITY}@127.0.0.1", "--timeout", timeout)
    assert code == EXIT_USAGE
    assert said == "vigie collect: --timeout: give seconds, more than 0 and at most 86400\n"


@pytest.mark.parametrize("json", [["--json"], []], ids=["json", "table"])
def test_no_collect_output_holds_a_secret(write, secrets, silent_port, capsys, json) -> None:
    config = write("config.yaml", config_text(silent_port))
    runs = [
        ["--config", str(config), "--secrets", str(secrets), "--device", "acme/sw1"],
        ["--config", str(config), "--secrets", str(secrets), "--device", "fw1", "--collector", "snmp"],
        [f"snmp://{COMMUNITY}@127.0.0.1:{silent_port}"],
        [f"snmpv3://noc:{AUTH_KEY}:{PRIV_KEY}@127.0.0.1:{silent_port}?auth=SHA&priv=AES"],
    ]
    for args in runs:
        code, said = run_vigie(capsys, "collect", *args, "--timeout", "1", *json)
        assert code == 1, said  # nothing answers: the collection failed, and says so
        assert "timeout" in said or "unreachable" in said
        assert not any(secret in said for secret in PLANTED), said
    # An unencoded `/` makes the parser read the community's start as the host and poll it
    # (127.0.0.1:161, where a lab agent may answer): whatever comes back, the key stays masked.
    code, said = run_vigie(capsys, "collect", f"snmp://127.0.0.1/{COMMUNITY}@127.0.0.1", "--timeout", "1", *json)
    assert code in (0, 1) and "Traceback" not in said
    assert not any(secret in said for secret in PLANTED), said


@pytest.mark.parametrize(
    ("device", "edit", "code", "expected"),
    [
        ("nosuch", None, EXIT_USAGE, "vigie collect: no device 'nosuch' in {config}"),
        ("other/sw1", None, EXIT_USAGE, "vigie collect: no device 'other/sw1' in {config}"),
        ("acme/sw1 --collector tcp", None, EXIT_USAGE,
         "vigie collect: acme/sw1: no collector 'tcp' on this device (its collectors: snmp)"),
        ("sw1", ("collectors: {snmp: }", "collectors: {nosuch: }"), EXIT_USAGE,
         "vigie collect: sw1: no installed collector to run (asked: nosuch;"),
        ("sw1", ("collectors: {snmp: }", "collectors: {snmp: {profile: nosuch}}"), EXIT_CONFIG,
         "{config}:7: clients[acme].sites[hq].devices[sw1].collectors.snmp.profile: unknown SNMP profile 'nosuch'"),
    ],
    ids=["unknown device", "unknown client", "collector not on the device", "collector not installed",
         "unknown profile"],
)
def test_a_bad_device_is_a_clear_error(write, secrets, capsys, device, edit, code, expected) -> None:
    text = config_text() if edit is None else config_text().replace(*edit, 1)
    config = write("config.yaml", text)
    argv = ["collect", "--config", str(config), "--secrets", str(secrets), "--device", *device.split()]
    status, said = run_vigie(capsys, *argv)
    assert status == code, said
    assert expected.format(config=config) in said
    assert "Traceback" not in said
    assert not any(secret in said for secret in PLANTED)
