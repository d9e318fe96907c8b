"""What every service stands on, with no business logic: HTTP, its own database, running."""
