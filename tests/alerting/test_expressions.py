import pytest

from agent.api.expressions import ExpressionError, compile_expression


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "x.__class__",
        "x[0]",
        "2 ** 1000000",
        "lambda: 1",
        "[i for i in (1, 2)]",
        "f'{x}'",
        "x if y else z",
        "(x := 1)",
        "",
        "a ==",
    ],
)
def test_rejects_anything_outside_the_whitelist(source):
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_fields_then_tags():
    expr = compile_expression("admin_status == 'up' and oper_status == 'down' and role == 'core'")
    assert expr.evaluate({"admin_status": "up", "oper_status": "down"}, {"role": "core"}) is True
    assert expr.evaluate({"admin_status": "up", "oper_status": "up"}, {"role": "core"}) is False
    # a field shadows a tag of the same name
    assert compile_expression("x == 1").evaluate({"x": 1}, {"x": "2"}) is True


def test_arithmetic_and_comparisons():
    expr = compile_expression("(used / total) * 100 >= 90 and 0 < total")
    assert expr.evaluate({"used": 95, "total": 100}) is True
    assert expr.evaluate({"used": 10, "total": 100}) is False
    assert compile_expression("status in ('unreachable', 'timeout')").evaluate({"status": "timeout"}) is True
    assert compile_expression("not (cpu > 90)").evaluate({"cpu": 10}) is True
    assert compile_expression("-temp < -5").evaluate({"temp": 10}) is True


@pytest.mark.parametrize(
    "source, fields, expected",
    [
        ("oper_status == 'down'", {}, None),  # missing
        ("oper_status == 'down'", {"oper_status": None}, None),  # unknown value
        ("cpu > 90", {"cpu": None}, None),
        ("not cpu > 90", {"cpu": None}, None),
        ("a == 'up' and b == 'down'", {"a": "up"}, None),
        ("a == 'up' and b == 'down'", {"a": "down"}, False),  # known false whatever b is
        ("a == 'up' or b == 'down'", {"a": "up"}, True),  # known true whatever b is
        ("a == 'up' or b == 'down'", {"a": "down"}, None),
        ("used / total > 0.9", {"used": 5, "total": 0}, None),  # division by zero
        ("name < 3", {"name": "x"}, None),  # type error
        ("name * 3 == 'xxx'", {"name": "x"}, None),  # no string arithmetic
    ],
)
def test_unknown_propagates(source, fields, expected):
    assert compile_expression(source).evaluate(fields, {}) is expected


def test_names_are_only_sample_lookups():
    assert compile_expression("__builtins__ == 1").evaluate({}, {}) is None
    assert compile_expression("__class__ == 'x'").evaluate({"__class__": "x"}) is True
