"""The config loader fuzzed: a real estate's file mutated (lines dropped, cut short, bytes changed,
values swapped for hostile ones) and arbitrary bytes -> a Config or one ConfigError listing
FILE:LINE problems, never another exception (tests/config/test_hostile_configs.py holds the crafted
cases: encodings, depth, alias bombs, size)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agent.config import load_config
from agent.config.errors import ConfigError
from agent.plugins import Plugins
from tests.drills.fuzzing import FUZZ, bounded_memory, hostile_text

ROOT = Path(__file__).resolve().parents[2]
ESTATE = (ROOT / "lab" / "estates" / "ofdt.yaml").read_text()
LINES = ESTATE.splitlines()
PLUGINS = Plugins.discover()
SECRETS = "x: y\n"
yaml_scalars = st.sampled_from(["", "~", "null", "[]", "{}", "-1", "1e999", "0x10", "yes", "'", '"', "&a", "*a",
                                "!!python/object:os.system", "${UNSET}", "${HOME:-x}", "\t", "%"]) | hostile_text


def mutate(data: st.DataObject) -> str:
    lines = list(LINES)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(lines) - 1))
        how = data.draw(st.sampled_from(["drop", "cut", "value", "indent", "duplicate"]))
        line = lines[at]
        if how == "drop":
            del lines[at]
        elif how == "cut":
            lines[at] = line[: data.draw(st.integers(0, len(line)))]
        elif how == "value" and ":" in line:
            lines[at] = line.split(":", 1)[0] + ": " + data.draw(yaml_scalars)
        elif how == "indent":
            lines[at] = " " * data.draw(st.integers(0, 7)) + line.lstrip()
        else:
            lines.insert(at, line)
    text = "\n".join(lines)
    return text[: data.draw(st.integers(0, len(text)))] if data.draw(st.booleans()) else text


def load(text: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config, secrets = Path(tmp) / "vigie.yaml", Path(tmp) / "secrets.yaml"
        config.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        secrets.write_text(SECRETS)
        secrets.chmod(0o600)
        try:
            load_config(config, secrets_path=secrets, environ={}, plugins=PLUGINS)
        except ConfigError as exc:
            assert str(exc).strip(), "a ConfigError with no message"
            assert str(config) in str(exc) or str(secrets) in str(exc), f"the error names no file: {exc}"


@FUZZ
@given(st.data())
def test_a_mutated_estate_loads_or_is_one_config_error(data) -> None:
    load(mutate(data))


@FUZZ
@given(st.binary(max_size=2000) | hostile_text)
def test_garbage_is_one_config_error(garbage) -> None:
    load(garbage)


def test_a_huge_file_costs_bounded_memory() -> None:
    # 2k lines of a valid-looking list (the loader refuses files past 16 MB unread); the loader's time
    # is linear in it (about 0.7 ms an entry), tracemalloc multiplies it: kept small
    huge = "clients:\n" + "  - name: c\n    sites: []\n" * 1_000
    with bounded_memory(300 * 2**20):
        load(huge)
