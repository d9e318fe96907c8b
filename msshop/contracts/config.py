"""Settings: built-in defaults <- TOML file <- MSSHOP_* environment <- command-line flags.

Every setting is declared once in SETTINGS, with its default, its environment variable and
what values it allows. configs/msshop.toml lists them all with the same defaults (a test
keeps the two in step). A bad value anywhere is one ConfigError line that names the key,
where the value came from and what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msshop.contracts.errors import ConfigError
from msshop.contracts.strategies import DEFAULT_WRITE, WriteStrategy

CONFIG_ENV = "MSSHOP_CONFIG"
LOG_LEVELS = ("debug", "info", "warning", "error")
BUS_BACKENDS = ("log", "nats")
BUS_NODES = (1, 3, 5)  # a JetStream cluster needs a majority: an odd number of nodes
KEPT_MIB = 16  # the query service's kept answers, at most (services/query/kept.py)
#: finished spans each service keeps for GET /spans (about 1 KiB each: with KEPT_MIB, what
#: 200,000 distinct users asked once add to the query service stays within 32 MiB)
SPANS_KEPT = 10_000


@dataclass(frozen=True)
class Setting:
    key: str  # "section.name", as in the TOML file
    kind: type  # int, float, str or Path
    default: Any
    env: str
    allowed: str  # what the error message says is allowed
    check: Callable[[Any], bool] = lambda value: True


def _is_nats_url(value: str) -> bool:
    """"" (msshop starts its own server) or nats://[user:password@]host:port[,nats://…]."""
    if value == "":
        return True
    from urllib.parse import urlsplit

    for url in value.split(","):
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("nats", "tls") or not parts.hostname or port is None:
            return False
    return True


def _is_name(value: str) -> bool:
    """A stream name JetStream takes, as contracts/streams.py's NAME says."""
    from msshop.contracts.streams import NAME

    return NAME.fullmatch(value) is not None


def _is_command(value: tuple[str, ...]) -> bool:
    """() (msshop's own program) or a program and its arguments, none of them empty."""
    return all(value) and "\0" not in "".join(value)


#: the parts a program of your own may run as: not yet the bus, whose appends are checked
#: with credentials only msshop's own bus knows how to check (the senders' digests)
FOREIGN_BUS = ("() only: a program of your own as the bus is not supported yet (it would "
               "have to check each writer's credential); run a program as users, products, "
               "orders or query")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "sandbox.dir", Path, Path("sandbox"), "MSSHOP_SANDBOX",
        "a directory path (a directory that exists, or none yet; not a file)",
        lambda v: str(v) != "" and (Path(v).is_dir() or not Path(v).exists()),
    ),
    Setting(
        "sandbox.base_port", int, 7100, "MSSHOP_BASE_PORT",
        "0 (pick free ports) or a port from 1024 to 65500",
        lambda v: v == 0 or 1024 <= v <= 65500,
    ),
    Setting(
        "sandbox.host", str, "127.0.0.1", "MSSHOP_HOST",
        "an IP address to bind, 127.0.0.1 unless you mean to expose the sandbox",
        _is_ip,
    ),
    Setting(
        "services.startup_timeout", float, 10.0, "MSSHOP_STARTUP_TIMEOUT",
        "seconds, more than 0 and at most 300",
        lambda v: 0 < v <= 300,
    ),
    Setting(
        "services.stop_timeout", float, 5.0, "MSSHOP_STOP_TIMEOUT",
        "seconds, more than 0 and at most 300",
        lambda v: 0 < v <= 300,
    ),
    Setting(
        "services.http_timeout", float, 2.0, "MSSHOP_HTTP_TIMEOUT",
        "seconds, more than 0 and at most 300",
        lambda v: 0 < v <= 300,
    ),
    *(Setting(
        f"timeouts.{name}", float, 0.0, f"MSSHOP_TIMEOUT_{name.upper()}",
        "seconds from 0 to 300; 0 means services.http_timeout",
        lambda v: 0 <= v <= 300,
    ) for name in ("bus", "users", "products", "orders")),
    Setting(
        "services.log_level", str, "info", "MSSHOP_LOG_LEVEL",
        "one of " + ", ".join(LOG_LEVELS),
        lambda v: v in LOG_LEVELS,
    ),
    *(Setting(
        f"services.{name}.command", tuple, (), f"MSSHOP_{name.upper()}_COMMAND",
        f"[] (msshop's own {name} service) or a program and its arguments, e.g. "
        '["python3", "my_service.py"] (in the environment: "python3 my_service.py")',
        _is_command,
    ) for name in ("users", "products", "orders", "query")),
    Setting(
        "services.bus.command", tuple, (), "MSSHOP_BUS_COMMAND", FOREIGN_BUS,
        lambda v: v == (),
    ),
    Setting(
        "connections.request_timeout", float, 5.0, "MSSHOP_REQUEST_TIMEOUT",
        "seconds from 0.5 to 300 (a client has this long to send a whole request)",
        lambda v: 0.5 <= v <= 300,
    ),
    Setting(
        "connections.keep_alive", int, 30, "MSSHOP_KEEP_ALIVE",
        "whole seconds from 20 to 3600 (the services' own calls keep a connection idle 15 s, "
        "so it must stay longer than that)",
        lambda v: 20 <= v <= 3600,
    ),
    Setting(
        "connections.max_connections", int, 1000, "MSSHOP_MAX_CONNECTIONS",
        "an integer from 16 to 1000000 (each service's; it also stays within its "
        "file-descriptor limit)",
        lambda v: 16 <= v <= 1_000_000,
    ),
    Setting(
        "bus.backend", str, "log", "MSSHOP_BUS_BACKEND",
        "one of " + ", ".join(BUS_BACKENDS),
        lambda v: v in BUS_BACKENDS,
    ),
    Setting(
        "bus.url", str, "", "MSSHOP_BUS_URL",
        "\"\" (msshop starts its own server) or nats://user:password@host:port, several "
        "separated by commas",
        _is_nats_url,
    ),
    Setting(
        "bus.nodes", int, 1, "MSSHOP_BUS_NODES",
        "1, 3 or 5 (the nats-servers msshop starts; the stream is replicated on up to 3)",
        lambda v: v in BUS_NODES,
    ),
    Setting(
        "bus.stream", str, "", "MSSHOP_BUS_STREAM",
        "\"\" (the sandbox's own: msshop-<its identity>) or a stream name of letters, "
        "digits, - and _ (at most 64)",
        lambda v: v == "" or _is_name(v),
    ),
    Setting(
        "bus.dedup_window", float, 120.0, "MSSHOP_BUS_DEDUP_WINDOW",
        "seconds from 0.1 to 86400 (how long JetStream remembers an event's id)",
        lambda v: 0.1 <= v <= 86400,
    ),
    Setting(
        "query.kept_mib", int, KEPT_MIB, "MSSHOP_QUERY_KEPT_MIB",
        "MiB from 0 to 4096 (0 keeps no answers: every replicated read reads the file)",
        lambda v: 0 <= v <= 4096,
    ),
    Setting(
        "traces.spans_kept", int, SPANS_KEPT, "MSSHOP_SPANS_KEPT",
        "an integer from 100 to 1000000 (finished spans each service keeps for GET /spans, "
        "about 1 KiB each; the oldest go)",
        lambda v: 100 <= v <= 1_000_000,
    ),
    Setting(
        "isolation.kernel", bool, True, "MSSHOP_KERNEL_ISOLATION",
        "true or false (env: 1 or 0): false runs every service without its Landlock rule, "
        "for debugging; the isolation rule is then checked only inside msshop's services",
    ),
    Setting(
        "isolation.read", tuple, (), "MSSHOP_ISOLATION_READ",
        "a list of folders or files a program of your own may also read under the kernel's "
        "rule, e.g. [\"~/.pyenv\"] (env: separated by spaces, as a shell would)",
        _is_command,
    ),
    Setting(
        "purchase.strategy", str, str(DEFAULT_WRITE), "MSSHOP_PURCHASE_STRATEGY",
        "one of " + ", ".join(WriteStrategy) + " (how `msshop buy` takes stock and credit)",
        lambda v: v in tuple(WriteStrategy),
    ),
    Setting(
        "ui.enabled", bool, False, "MSSHOP_UI",
        "true or false (env: 1 or 0): `msshop up` also starts the live dashboard (msshop ui "
        "prints its address and login)",
    ),
    Setting(
        "saga.step_timeout", float, 10.0, "MSSHOP_SAGA_STEP_TIMEOUT",
        "seconds from 0.1 to 3600 (how long the orchestrated saga waits for a participant's "
        "reply before it undoes the purchase)",
        lambda v: 0.1 <= v <= 3600,
    ),
    Setting(
        "seed.users", int, 200, "MSSHOP_SEED_USERS",
        "an integer from 1 to 10000000",
        lambda v: 1 <= v <= 10_000_000,
    ),
    Setting(
        "seed.products", int, 60, "MSSHOP_SEED_PRODUCTS",
        "an integer from 1 to 10000000",
        lambda v: 1 <= v <= 10_000_000,
    ),
    Setting(
        "seed.orders", int, 2000, "MSSHOP_SEED_ORDERS",
        "an integer from 0 to 100000000",
        lambda v: 0 <= v <= 100_000_000,
    ),
    Setting(
        "seed.seed", int, 42, "MSSHOP_SEED",
        "any integer",
    ),
)
BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


@dataclass(frozen=True)
class ConnectionLimits:
    """What each service allows the connections it takes (runtime/platform/connections.py):
    seconds to send a whole request, seconds idle between requests, and how many at once."""

    request_timeout: float = 5.0
    keep_alive: int = 30
    max_connections: int = 1000


@dataclass(frozen=True)
class Settings:
    sandbox_dir: Path
    base_port: int
    host: str
    startup_timeout: float
    stop_timeout: float
    http_timeout: float
    timeouts: dict[str, float]  # per dependency; absent: http_timeout
    log_level: str
    # a program that runs as that service instead of msshop's own (absent: ours)
    commands: dict[str, tuple[str, ...]]
    connections: ConnectionLimits
    bus_backend: str  # "log" (the sandbox's own) or "nats" (JetStream)
    bus_url: str  # nats: an existing server ("" starts one)
    bus_nodes: int  # nats: how many servers msshop starts
    bus_stream: str  # nats: the stream ("": the sandbox's own, named for its identity)
    bus_dedup_window: float  # nats: seconds JetStream remembers an event id
    query_kept_mib: int  # the answers the query service keeps in memory, at most
    traces_spans_kept: int  # finished spans each service keeps for GET /spans
    kernel_isolation: bool  # each service under a Landlock ruleset, where the kernel has it
    # what a program of your own may also read under it (its runtime, where msshop cannot
    # tell): absolute, ~ expanded, relative to the directory msshop runs in
    isolation_read: tuple[Path, ...]
    purchase_strategy: str  # a WriteStrategy's name
    saga_step_timeout: float  # seconds the orchestrator waits for a reply, then undoes
    ui_enabled: bool  # `up` starts the dashboard too
    seed_users: int
    seed_products: int
    seed_orders: int
    seed_seed: int

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        return cls(
            sandbox_dir=Path(values["sandbox.dir"]).expanduser().resolve(),
            base_port=values["sandbox.base_port"],
            host=values["sandbox.host"],
            startup_timeout=values["services.startup_timeout"],
            stop_timeout=values["services.stop_timeout"],
            http_timeout=values["services.http_timeout"],
            timeouts={key.partition(".")[2]: value for key, value in values.items()
                      if key.startswith("timeouts.") and value},
            log_level=values["services.log_level"],
            commands={key.split(".")[1]: value for key, value in values.items()
                      if key.endswith(".command") and value},
            connections=ConnectionLimits(
                request_timeout=values["connections.request_timeout"],
                keep_alive=values["connections.keep_alive"],
                max_connections=values["connections.max_connections"]),
            bus_backend=values["bus.backend"],
            bus_url=values["bus.url"],
            bus_nodes=values["bus.nodes"],
            bus_stream=values["bus.stream"],
            bus_dedup_window=values["bus.dedup_window"],
            query_kept_mib=values["query.kept_mib"],
            traces_spans_kept=values["traces.spans_kept"],
            kernel_isolation=values["isolation.kernel"],
            isolation_read=tuple(Path(p).expanduser().absolute()
                                 for p in values["isolation.read"]),
            purchase_strategy=values["purchase.strategy"],
            saga_step_timeout=values["saga.step_timeout"],
            ui_enabled=values["ui.enabled"],
            seed_users=values["seed.users"],
            seed_products=values["seed.products"],
            seed_orders=values["seed.orders"],
            seed_seed=values["seed.seed"],
        )


def defaults() -> dict[str, Any]:
    return {s.key: s.default for s in SETTINGS}


def load(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve settings. `overrides` are flag values by key; None means "flag not given"."""
    env = os.environ if env is None else env
    values = defaults()
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV])
    if config_file is not None:
        values.update(read_file(config_file))
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is not None and raw != "":
            values[setting.key] = _coerce(setting, raw, f"environment variable {setting.env}")
    for key, value in (overrides or {}).items():
        if value is not None:
            setting = BY_KEY[key]
            values[key] = _coerce(setting, value, f"option for {key}")
    return Settings.from_values(values)


def read_file(path: Path) -> dict[str, Any]:
    """Read a TOML settings file into {key: typed value}; relative paths are file-relative."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte "
                          f"{exc.object[exc.start]:#04x} at offset {exc.start}); save it as "
                          "UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    import tomllib  # here: most commands read no config file, and it costs ~3 ms to import

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(
                f"{path}: '{section}' must be a [section]; sections are "
                + ", ".join(sorted({k.split('.')[0] for k in BY_KEY}))
            )
        for key, raw in _flattened(section, table):
            setting = BY_KEY.get(key)
            if setting is None:
                raise ConfigError(
                    f"{path}: unknown setting '{key}'; known settings: " + ", ".join(BY_KEY)
                )
            value = _coerce(setting, raw, f"file {path}", parse_text=False)
            if setting.kind is Path and not Path(value).is_absolute():
                value = (path.parent / value).resolve()
            values[key] = value
    return values


def _flattened(prefix: str, table: dict[str, Any]) -> list[tuple[str, Any]]:
    """A TOML table's values by dotted key: [services.query] command = […] (a table in a
    table) is the key services.query.command, as `query.command = […]` in [services] is."""
    found: list[tuple[str, Any]] = []
    for name, raw in table.items():
        key = f"{prefix}.{name}"
        if isinstance(raw, dict) and key not in BY_KEY:
            found += _flattened(key, raw)
        else:
            found.append((key, raw))
    return found


def _coerce(setting: Setting, raw: Any, origin: str, parse_text: bool = True) -> Any:
    """Turn a raw value into the setting's type. Text from the environment is parsed; a value
    from a TOML file (parse_text=False) must already have the right TOML type."""
    value: Any = None
    try:
        if setting.kind is bool:  # true/false in a file; 1/0, true/false, yes/no as text
            if isinstance(raw, bool):
                value = raw
            elif isinstance(raw, str) and parse_text:
                value = {"1": True, "true": True, "yes": True, "on": True, "0": False,
                         "false": False, "no": False, "off": False}.get(raw.strip().lower())
        elif setting.kind is int:
            if isinstance(raw, int | str) and not isinstance(raw, bool):
                value = int(raw)
        elif setting.kind is float:
            if isinstance(raw, int | float | str) and not isinstance(raw, bool):
                value = float(raw)
        elif setting.kind is Path:
            if isinstance(raw, str | Path):
                value = Path(raw)
        elif setting.kind is tuple:  # a command: a list in a file, a shell-like string else
            if isinstance(raw, list | tuple) and all(isinstance(arg, str) for arg in raw):
                value = tuple(raw)
            elif isinstance(raw, str) and parse_text:
                import shlex

                value = tuple(shlex.split(raw))
        elif isinstance(raw, str):
            value = (raw.strip().lower() if setting.key in ("services.log_level", "bus.backend")
                     else raw)
    except ValueError:
        value = None
    if not parse_text and isinstance(raw, str) and setting.kind in (int, float):
        value = None  # in a file, "8000" is a string, not a number
    if value is None or not setting.check(value):
        shown = str(raw) if isinstance(raw, Path) else raw  # as typed, not PosixPath('…')
        raise ConfigError(
            f"{setting.key} = {shown!r} (from {origin}) is not allowed: use {setting.allowed}"
        )
    return value
