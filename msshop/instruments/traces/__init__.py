"""A gathered trace, read back: its shape (tree, summary, stages), the store of recent
traces, and exports (OTLP/JSON, Mermaid). Spans are made in the services by
msshop.runtime.platform.tracing; their record is msshop.contracts.spans."""
