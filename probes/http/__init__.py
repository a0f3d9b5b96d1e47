"""The HTTP(S) probe: one request, its status, latency, body match and redirects.

Options (README.md beside this file): ``url`` (required), ``method``, ``expect_status``,
``body_regex``, ``follow_redirects`` / ``max_redirects``, ``auth`` (``basic`` | ``bearer``, from the
device's credentials secret), ``ca_bundle``, ``verify_tls``, ``client_cert`` / ``client_key``,
``headers``, ``timeout_s``, ``max_body_bytes``. The URL names the host: the device's address and
port are not read. Measurement ``http_response`` (docs/METRICS.md, "Probes").
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from agent.api import CollectError, CollectorContext, PluginSpec, Rule, Sink, Target, Unreachable
from probes.http.client import Answer, ConnectFailed, HttpFailure, Request, exchange

log = logging.getLogger(__name__)

__all__ = ["PLUGIN", "HttpCredentials", "HttpOptions", "HttpProbe", "default_rules", "target_from_url"]

MEASUREMENT = "http_response"
_STRICT = ConfigDict(extra="forbid", frozen=True)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r}: expected http://HOST/... or https://HOST/...")
    if parts.username or parts.password:
        raise ValueError("a login in the URL would be written in the config: use `auth` and the device's credentials")
    return url


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regex {pattern!r}: {exc}") from None
    return pattern


Seconds = Annotated[float, Field(gt=0, le=300), BeforeValidator(_not_bool)]


class HttpOptions(BaseModel):
    model_config = _STRICT

    url: Annotated[str, AfterValidator(_http_url)]
    method: Literal["GET", "HEAD", "POST", "OPTIONS"] = "GET"
    # empty: any status below 400
    expect_status: list[Annotated[int, Field(ge=100, le=599), BeforeValidator(_not_bool)]] = []
    body_regex: Annotated[str, AfterValidator(_regex)] | None = None
    follow_redirects: bool = True
    max_redirects: Annotated[int, Field(ge=0, le=30), BeforeValidator(_not_bool)] = 10
    auth: Literal["none", "basic", "bearer"] = "none"
    ca_bundle: Path | None = None  # None: the system's trust store
    verify_tls: bool = True
    client_cert: Path | None = None  # PEM certificate (and key, unless client_key is given)
    client_key: Path | None = None
    headers: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]+$")], str] = {}
    timeout_s: Seconds = 10.0
    max_body_bytes: Annotated[int, Field(ge=0, le=64 * 1024 * 1024), BeforeValidator(_not_bool)] = 1024 * 1024

    @model_validator(mode="after")
    def _consistent(self) -> HttpOptions:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        if "authorization" in {h.lower() for h in self.headers}:
            raise ValueError("an Authorization header would be written in the config: use `auth` and credentials")
        return self


class HttpCredentials(BaseModel):
    """The device's credentials secret for ``auth: basic`` (username, password) or ``auth:
    bearer`` (token). Other keys are left alone: a device's one secret may serve other
    collectors too."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    username: Annotated[str, StringConstraints(min_length=1)] | None = None
    password: str | None = None
    token: Annotated[str, StringConstraints(min_length=1)] | None = None


def tls_context(options: HttpOptions) -> ssl.SSLContext:
    """The client's TLS settings; a file that cannot be read is a ValueError (the config is refused)."""
    try:
        context = ssl.create_default_context(cafile=str(options.ca_bundle) if options.ca_bundle else None)
        if options.client_cert is not None:
            context.load_cert_chain(str(options.client_cert), str(options.client_key) if options.client_key else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TLS files: {exc}") from None
    if not options.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _auth(options: HttpOptions, credentials: Mapping[str, Any]) -> tuple[httpx.Auth | None, dict[str, str]]:
    if options.auth == "none":
        return None, {}
    try:
        login = HttpCredentials.model_validate(dict(credentials))
    except ValidationError as exc:
        # never echo the input: it is a secret
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise CollectError(f"credentials for auth {options.auth}: invalid {fields}") from None
    if options.auth == "basic":
        if login.username is None or login.password is None:
            raise CollectError("auth basic needs username and password in the device's credentials")
        return httpx.BasicAuth(login.username, login.password), {}
    if login.token is None:
        raise CollectError("auth bearer needs token in the device's credentials")
    return None, {"Authorization": f"Bearer {login.token}"}


def shown_url(url: str) -> str:
    """The URL as a tag: without its query (which may carry a key) and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def evaluate(options: HttpOptions, answer: Answer) -> dict[str, Any]:
    """The sample's fields from one answer: ``result`` is ``ok`` when the status is expected and
    the body matches (when a regex is given)."""
    if options.expect_status:
        status_ok = answer.status_code in options.expect_status
    else:
        status_ok = answer.status_code < 400
    body_match = None
    if options.body_regex is not None:
        text = answer.body.decode("utf-8", errors="replace")
        body_match = re.search(options.body_regex, text) is not None
    result = "ok" if status_ok and body_match is not False else "status_mismatch" if not status_ok else "body_mismatch"
    error = None
    if not status_ok:
        wanted = ", ".join(map(str, options.expect_status)) or "< 400"
        error = f"status {answer.status_code}, expected {wanted}"
    elif body_match is False:
        read = f"the first {len(answer.body)} bytes" if answer.truncated else "the body"
        error = f"{read} do not match {options.body_regex!r}"
    return {
        "result": result,
        "status_code": answer.status_code,
        "latency_ms": round(answer.elapsed_s * 1000, 3),
        "redirects": answer.redirects,
        "final_url": shown_url(answer.final_url),
        "body_bytes": len(answer.body),
        "body_match": body_match,
        "error": error,
    }


def failed(failure: HttpFailure) -> dict[str, Any]:
    return {
        "result": failure.kind,
        "status_code": None,
        "latency_ms": None,
        "redirects": None,
        "final_url": None,
        "body_bytes": None,
        "body_match": None,
        "error": str(failure),
    }


class HttpProbe:
    def __init__(
        self, options: HttpOptions, context: CollectorContext, *, monotonic: Callable[[], float] = time.perf_counter
    ) -> None:
        self.options = options
        self.tls = tls_context(options)
        if not options.verify_tls and options.url.startswith("https://"):
            log.warning("%s/%s: http: TLS verification of %s disabled by verify_tls: false", context.client,
                        context.device, shown_url(options.url))
        self.monotonic = monotonic
        self.tags = {"url": shown_url(options.url), "method": options.method}

    async def collect(self, target: Target, sink: Sink) -> None:
        options = self.options
        auth, headers = _auth(options, target.credentials)
        request = Request(
            method=options.method,
            url=options.url,
            headers={**options.headers, **headers},
            auth=auth,
            follow_redirects=options.follow_redirects,
            max_redirects=options.max_redirects,
            timeout_s=options.timeout_s,
            max_body_bytes=options.max_body_bytes,
        )
        try:
            answer = await exchange(request, self.tls, self.monotonic)
        except ConnectFailed as exc:
            sink.emit(MEASUREMENT, failed(exc), self.tags)
            raise Unreachable(f"{self.tags['url']}: {exc}") from None
        except HttpFailure as exc:
            # a server answered (TLS refused, a broken or late answer): the result says what
            sink.emit(MEASUREMENT, failed(exc), self.tags)
            return
        sink.emit(MEASUREMENT, evaluate(options, answer), self.tags)


def default_rules() -> list[Rule]:
    return [
        Rule(
            name="http_check_failed",
            measurement=MEASUREMENT,
            when="result != 'ok'",
            for_s=120,
            severity="critical",
            summary="{device}: {url} answers {result} ({error})",
        )
    ]


def target_from_url(url: str) -> tuple[Target, dict[str, Any]]:
    """``http://...`` or ``https://...``: the URL is the probe's ``url`` (its query included)."""
    _http_url(url)
    host = urlsplit(url).hostname or ""
    return Target(name=host, address=host), {"url": url}


PLUGIN = PluginSpec(
    name="http",
    kind="probe",
    factory=HttpProbe,
    options=HttpOptions,
    default_rules=default_rules,
    url_schemes={"http": target_from_url, "https": target_from_url},
    description="HTTP(S) request: status, latency, body match, redirects, basic/bearer auth, client certificates",
)
