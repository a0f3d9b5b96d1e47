"""Where secret values come from: a private YAML file and ``VIGIE_SECRET_<NAME>`` variables.

The main config only ever names a secret (``credentials: NAME`` or ``{secret: NAME}``), so it can be
committed, reviewed and printed; the values live here. A secret is either a plain string (a token)
or a mapping of strings (SNMP credentials, a login).

Lookup order for a name: the environment variable ``VIGIE_SECRET_<NAME>`` (NAME upper-cased, ``-``
and ``.`` turned into ``_``), then the secrets file. The environment wins so an operator can rotate
one value on one host without editing the shared file.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Mapping
from pathlib import Path

SecretValue = str | dict[str, str]

ENV_PREFIX = "VIGIE_SECRET_"


class SecretsFileError(Exception):
    """The secrets file cannot be used; ``errors`` lists each problem as "FILE: message"."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def env_name(name: str) -> str:
    """The environment variable that may hold secret ``name``."""
    return ENV_PREFIX + re.sub(r"[-.]", "_", name).upper()


class SecretStore:
    """Secret values by name. ``repr`` never shows a value, so a store can be logged safely."""

    def __init__(
        self,
        file_values: Mapping[str, SecretValue],
        environ: Mapping[str, str],
        path: Path | None = None,
    ) -> None:
        self._file_values = dict(file_values)
        self._environ = environ
        self.path = path

    def __repr__(self) -> str:
        return f"SecretStore(path={self.path!s}, names={len(self._file_values)})"

    @classmethod
    def load(cls, path: Path | str | None, environ: Mapping[str, str]) -> SecretStore:
        """Read the secrets file (if any) after checking that only its owner can read it."""
        if path is None:
            return cls({}, environ)
        # agent.config imports this module: a module-level import would be circular.
        from agent.config.errors import ConfigError
        from agent.config.loader import read_plain_yaml

        path = Path(path)
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise SecretsFileError([f"{path}: cannot read secrets file: {exc.strerror}"]) from None
        if stat.S_ISDIR(mode):
            raise SecretsFileError([f"{path}: is a directory, not a secrets file"])
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # A readable secrets file leaks every device's credentials to any local account.
            raise SecretsFileError(
                [
                    f"{path}: secrets file is accessible by group or others (mode "
                    f"{stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
                ]
            )
        try:
            raw = read_plain_yaml(path)
        except ConfigError as exc:
            raise SecretsFileError(exc.errors) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise SecretsFileError([f"{path}: expected a mapping of secret name -> value"])
        values: dict[str, SecretValue] = {}
        errors: list[str] = []
        for name, value in raw.items():
            parsed = _coerce(value)
            if parsed is None:
                errors.append(f"{path}: secret {name!r}: expected a string or a mapping of strings")
            else:
                values[str(name)] = parsed
        if errors:
            raise SecretsFileError(errors)
        return cls(values, environ, path)

    def where(self, name: str) -> str:
        """Where ``name`` was looked for, for an error message."""
        places = [f"${env_name(name)}"]
        if self.path is not None:
            places.append(str(self.path))
        return " and ".join(places)

    def get(self, name: str) -> SecretValue | None:
        """The value of secret ``name``, or ``None`` when it is defined nowhere."""
        from_env = self._environ.get(env_name(name))
        if from_env is not None:
            return _parse_env(from_env)
        return self._file_values.get(name)


def _coerce(value: object) -> SecretValue | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and all(isinstance(v, str | int | float) for v in value.values()):
        return {str(k): str(v) for k, v in value.items()}
    return None


def _parse_env(text: str) -> SecretValue:
    """A JSON object when the variable holds one (SNMPv3 credentials), the raw string otherwise."""
    if text.lstrip().startswith("{"):
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            return text
        coerced = _coerce(decoded)
        if isinstance(coerced, dict):
            return coerced
    return text
