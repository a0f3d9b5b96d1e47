"""Hypothesis settings shared by the fuzz drills: a bounded number of examples in `make test`
(replayed identically on every run: tests/conftest.py), more and freshly drawn when
bench/bench_drills.py sets VIGIE_FUZZ_EXAMPLES."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("VIGIE_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # 2 shared cores: a slow example is load, not a finding
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no .hypothesis/ directory left in the working tree
)

# Text a vendor may send: every plane, lone surrogates, NULs, control characters.
hostile_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | hostile_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(hostile_text, inner, max_size=6),
    max_leaves=30,
)


def dicts_with(keys: list[str]) -> st.SearchStrategy[dict]:
    """Dictionaries whose keys are mostly the ones the parser reads, with values of any JSON type."""
    return st.dictionaries(st.sampled_from(keys) | hostile_text, json_values, max_size=len(keys) + 2)


@contextmanager
def bounded_memory(limit_bytes: int) -> Iterator[None]:
    """Fails when the block allocates more than ``limit_bytes`` at its peak (Python allocations)."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= limit_bytes, f"peak allocation {peak:,} B > {limit_bytes:,} B"


def only_raises(call: Callable[[], object], *allowed: type[BaseException]) -> BaseException | None:
    """Runs ``call``; returns the exception if it is one of ``allowed`` (a clear refusal), lets any
    other propagate (a crash the fuzzer found)."""
    try:
        call()
    except allowed as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        return exc
    return None
