"""Who may do what inside a sandbox, proven with secrets that never leave its processes'
memory and its owner's state file (mode 0600): not on a command line, not in an environment
of another process, not in a log.

- The sandbox's token (state.json): its owner's. The CLI shows it to run admin requests
  (chaos, replay, spans, dead letters, the event log). Services never hold it, only its
  digest, enough to check it.
- A service's credential: derived from the token for that service by the supervisor, handed
  to that service alone at fork. The bus takes appends only from the writing services, and
  records as an event's source the service that proved who it is.
"""

from __future__ import annotations

# hashlib and hmac are imported where they are used: a CLI command that only reads the
# sandbox's state (status, logs, wait) imports this module and need not load OpenSSL.


def digest(secret: str) -> str:
    """What a checker keeps instead of the secret itself."""
    import hashlib

    return hashlib.sha256(secret.encode()).hexdigest()


def service_credential(sandbox_token: str, service: str) -> str:
    """The secret `service` shows the bus: unique to it, unguessable without the token."""
    import hashlib
    import hmac

    return hmac.new(sandbox_token.encode(), f"msshop bus {service}".encode(),
                    hashlib.sha256).hexdigest()


def dashboard_login(credential: str, pid: int) -> str:
    """The dashboard's login token (issue 28): from its own credential (which only it and
    the sandbox's owner can make) and the pid of the process it logs into, so that it is
    new each time the dashboard starts, and worth nothing once it has stopped."""
    import hashlib
    import hmac

    return hmac.new(credential.encode(), f"msshop ui login {pid}".encode(),
                    hashlib.sha256).hexdigest()[:32]


def bearer(secret: str) -> dict[str, str]:
    """The header that carries a secret."""
    return {"authorization": f"Bearer {secret}"}


def presented(header: str | None) -> str | None:
    """The secret in an `authorization: Bearer …` header, if there is one."""
    if not header or header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


def matches(secret: str | None, expected_digest: str | None) -> bool:
    import hmac

    return (secret is not None and expected_digest is not None
            and hmac.compare_digest(digest(secret), expected_digest))
