"""The documented limits of what the services take: one place, so the services enforce them,
the CLI checks them before sending, and the OpenAPI descriptions and the docs state them.
Beyond a limit the answer is a 413 (a body) or a 422 that names the limit, never a 500."""

MAX_ID = 2**63 - 1  # SQLite's INTEGER: ids and positions are at most this
MAX_BODY = 16 * 1024 * 1024  # bytes in one request body (10,000 orders are ~1 MB)
MAX_BATCH = 10_000  # ids in one ?ids= query, items in one batch body
MAX_QUANTITY = 1000  # of one product in one order
MAX_STOCK = 1_000_000_000
MAX_PRICE = 1_000_000  # in the shop's currency, at most two decimal places
MAX_TITLE = 200  # characters of a product's title
MAX_NAME = 200  # characters of a user's name
MAX_EMAIL = 254  # characters of an email address (RFC 5321)
MAX_SKU = 64  # characters of a product's sku
MAX_REQUEST_ID = 100  # characters of a purchase's idempotency key
MAX_EVENT_FIELD = 64  # characters of an event's id, type, source, aggregate type, trace id
