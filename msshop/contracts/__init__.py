"""What the runtime and the instruments share, and nothing else: errors, settings, the
service catalogue, the event envelope, the span record and the answers that cross a
process boundary. Imports neither side (import-linter's layers contract)."""
