"""Start, supervise and stop the processes of a sandbox.

Split as honcho splits it: `supervisor` (the manager and its loop), the kinds of process it
runs behind one protocol (`kind`: `forked_service` for msshop's services, over `process`;
`nats_node` for the nodes of a nats bus, over `broker`), `printer` (what the supervisor
tells a person), plus `ports` (bound before anything starts), `bootstrap` (which kind runs
which part, and the supervisor wired to them), `state` (the files on disk), `control` (the
supervisor's small command socket) and `lifecycle` (the functions the CLI calls). Modules
the CLI imports for commands that only talk to a running sandbox (state, control, health,
lifecycle) use the standard library only, so those commands start fast.
"""
