"""The one error the configuration raises."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration cannot be used. ``errors`` holds every problem, "FILE:LINE: path: message"."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
