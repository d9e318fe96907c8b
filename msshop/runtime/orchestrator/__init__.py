"""Start, supervise and stop the service processes of a sandbox.

Split as honcho splits it: `process` (one service process), `supervisor` (the manager and
its loop), `printer` (what the supervisor tells a person), plus `state` (the files on disk),
`control` (the supervisor's small command socket) and `lifecycle` (the functions the CLI
calls). Modules the CLI imports for commands that only talk to a running sandbox (state,
control, health, lifecycle) use the standard library only, so those commands start fast.
"""
