from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

ESTATES = Path(__file__).resolve().parents[2] / "lab" / "estates"


@pytest.fixture
def lab_secrets(tmp_path: Path) -> Path:
    """The committed lab secrets with the 0600 mode git cannot keep."""
    path = tmp_path / "secrets.yaml"
    shutil.copyfile(ESTATES / "secrets.yaml", path)
    path.chmod(0o600)
    return path


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write a file under tmp_path (0600 for secrets files) and return its path."""

    def _write(name: str, text: str, mode: int = 0o600) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return path

    return _write
