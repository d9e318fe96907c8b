"""What a service process is told about its world when it starts."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msshop.platform.db import guard_connection, open_database
from msshop.platform.http import Peers


@dataclass(frozen=True)
class ServiceContext:
    name: str
    db_path: Path
    peer_urls: dict[str, str] = field(default_factory=dict)  # other services by name
    http_timeout: float = 2.0
    options: dict[str, Any] = field(default_factory=dict)

    def open_database(self, migrations: list[str]) -> sqlite3.Connection:
        """The service's own file, guarded against ATTACHing anyone else's."""
        conn = open_database(self.db_path, migrations)
        guard_connection(self.name, conn, self.db_path)
        return conn

    def peers(self) -> Peers:
        return Peers(self.peer_urls, self.http_timeout)
