"""Who may use the dashboard (issue 28): nobody but the sandbox's owner, in a browser on this
machine.

- **Login.** `msshop ui` prints an address with a login token, made from the dashboard's
  own credential and its pid (credentials.dashboard_login): new at each start, and worth
  nothing to anyone who cannot read the owner's state file. GET /login?token= exchanges it
  for a session cookie, HttpOnly (no script reads it) and SameSite=Strict (no other site's
  page sends it), as the .NET Aspire dashboard's browser token and Jupyter's login do. The
  token is never in a page.
- **Host.** A request whose Host is not a loopback name with the dashboard's port is
  refused: a page of another site whose name someone points at 127.0.0.1 (DNS rebinding)
  would otherwise be same-origin with the dashboard.
- **Actions.** A request that changes anything (POST) also needs the session's CSRF token in
  a header (`x-csrf-token`, which only the dashboard's own page has: it is in the page) and
  an Origin that is the dashboard's own.

Sessions live in the process's memory: the dashboard started again logs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

COOKIE = "msshop-ui-{port}"  # cookies are per host, not per port: one name per dashboard
CSRF_HEADER = "x-csrf-token"
MAX_SESSIONS = 64  # the oldest go first: a login loop cannot grow the process
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class Refused(Exception):
    """A request the guard turns away: the status and one line saying why and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Session:
    csrf: str
    since: float = field(default_factory=time.time)


class Guard:
    def __init__(self, port: int, login_token: str) -> None:
        self.port = port
        self.cookie = COOKIE.format(port=port)
        self._login = login_token
        self._sessions: dict[str, Session] = {}
        self.hosts = {f"{name}:{port}" for name in LOOPBACK}

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def host(self, host: str | None) -> None:
        """The Host must be this dashboard's loopback address."""
        if host not in self.hosts:
            raise Refused(403, f"refused: Host {host!r} is not this dashboard's address "
                               f"(a loopback name with port {self.port}); open "
                               f"{self.address}/ on this machine")

    def log_in(self, token: str) -> tuple[str, Session]:
        """A new session for the right token (compared in constant time)."""
        if not token or not hmac.compare_digest(token.encode(), self._login.encode()):
            raise Refused(403, "refused: that login token is not this dashboard's (it is new "
                               "each time the dashboard starts); get the address with: "
                               "msshop ui")
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        sid = secrets.token_urlsafe(32)
        session = self._sessions[sid] = Session(secrets.token_urlsafe(32))
        return sid, session

    def session(self, cookies: dict[str, str]) -> Session:
        sid = cookies.get(self.cookie)
        session = self._sessions.get(sid) if sid else None
        if session is None:
            raise Refused(401, "not logged in: open the address `msshop ui` prints (it "
                               "carries a login token)")
        return session

    def action(self, session: Session, csrf: str | None, origin: str | None,
               host: str | None) -> None:
        """A change asked for by the dashboard's own page: its CSRF token, its origin."""
        if not csrf or not hmac.compare_digest(csrf.encode(), session.csrf.encode()):
            raise Refused(403, f"refused: no valid {CSRF_HEADER} header (actions come from "
                               "the dashboard's own page)")
        if origin != f"http://{host}":
            raise Refused(403, f"refused: Origin {origin!r} is not the dashboard's own "
                               f"(http://{host})")

    def log_out(self, cookies: dict[str, str]) -> None:
        self._sessions.pop(cookies.get(self.cookie, ""), None)

    def set_cookie(self, sid: str) -> str:
        return f"{self.cookie}={sid}; Path=/; HttpOnly; SameSite=Strict"

    def clear_cookie(self) -> str:
        return f"{self.cookie}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
