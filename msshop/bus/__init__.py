"""The bus as an interface: what the relays, the consumers, `msshop events` and `msshop
replay` know of it (interface.py), and its implementations. The first is the sandbox's own
log (log.py: the `bus` service's SQLite log, over HTTP). Whoever uses a bus takes a `Bus`
and writes no address of its own, so another implementation plugs in beside log.py.

A layer of its own, under the runtime and the instruments (both use a bus) and over the
contracts (import-linter's layers contract)."""
