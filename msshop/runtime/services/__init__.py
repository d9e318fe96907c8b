"""The shop's services. A service module never imports another one (import-linter checks)."""
