"""What runs in the sandbox's processes: the platform every service stands on, the
services, and the orchestrator that forks and supervises them. It never imports the
instruments, render or the CLI (import-linter's layers contract)."""
