"""Profile expressions on what devices really send: arithmetic is on numbers only, and nothing an
expression computes from a device value grows without bound (issue 7 item 2)."""

from __future__ import annotations

import pytest

from collectors.snmp.expr import MAX_TEXT, compile_expression


def run(source: str, **env):
    return compile_expression(source).evaluate(env)


IF_MIB_BPS = ("high_speed * 1000000 if high_speed is not None and (speed is None or speed == 0 or speed > 1000000000)"
              " else speed")


@pytest.mark.parametrize("high_speed", ["1000", "<private>", "1" * 100])
def test_a_speed_sent_as_text_is_unknown_not_a_repeated_string(high_speed: str) -> None:
    # The if_mib expression: text * 1000000 used to be the text repeated a million times per port.
    assert run(IF_MIB_BPS, high_speed=high_speed, speed=4294967295) is None
    assert run(IF_MIB_BPS, high_speed=10000, speed=4294967295) == 10_000_000_000


@pytest.mark.parametrize(
    ("source", "env"),
    [
        ("a * 3", {"a": "ab"}),
        ("3 * a", {"a": "ab"}),
        ("a * b", {"a": (1, 2), "b": 2}),
        ("a + b", {"a": (1,), "b": (2,)}),
        ("a % 5", {"a": "%05d"}),  # text % x formats: a device value as format string
        ("a + 1", {"a": "41"}),  # a number sent as text is read with number(), explicitly
        ("a / 10", {"a": "420"}),
        ("a - b", {"a": "5", "b": "3"}),
        ("a + 1", {"a": True}),  # a truth value is not a quantity
        ("a * 10", {"a": False}),
        ("-a", {"a": True}),
        ("-a", {"a": "5"}),
        ("+a", {"a": (1,)}),
    ],
)
def test_arithmetic_on_anything_but_numbers_is_unknown(source: str, env: dict) -> None:
    assert run(source, **env) is None


def test_numbers_and_names_still_compute() -> None:
    assert run("a * 1000000", a=1000) == 1_000_000_000
    assert run("a / 4 + b", a=10, b=0.5) == 3.0
    assert run("-a", a=3) == -3
    assert run("'fan ' + index", index="1.2") == "fan 1.2"  # + joins two texts
    assert run("number(a) * 1000000", a="1000") == 1_000_000_000  # the explicit reading
    assert run("int(a) + 1", a="41") == 42


def test_built_text_is_bounded() -> None:
    half = "x" * (MAX_TEXT // 2)
    assert run("a + a", a=half) == half * 2
    assert run("a + a + 'y'", a=half) is None
    assert run("str(a)", a=tuple(range(MAX_TEXT))) is None
    assert run("str(a)", a=(1, 2)) == "(1, 2)"


def test_hostile_numbers_in_text_are_unknown_not_a_crash() -> None:
    assert run("number(a)", a="1" * 5000) is None  # int() refuses more than 4,300 digits
    assert run("number(a)", a="1" * 41) is None
    assert run("number(a)", a="-" + "1" * 40) == -int("1" * 40)
    assert run("round(a, d)", a=5, d=-31) is None  # round(5, -10**9) would compute 10**(10**9)
    assert run("round(a, d)", a=1.25, d=1) == 1.2
    assert run("round(a)", a="5") is None
