"""The TLS client settings plugins share: verification on by default, a CA bundle of the
operator's, and verification off only by an explicit option (which the plugin logs)."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_tls(ca_bundle: Path | str | None, verify: bool = True) -> ssl.SSLContext:
    """A client context trusting ``ca_bundle`` (else the system's CAs); ``verify=False`` checks
    neither chain nor host name. A bundle that cannot be read is a ValueError naming it (the
    configuration is refused, not the first connection)."""
    try:
        context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_bundle: {exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
