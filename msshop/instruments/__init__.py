"""What a person uses on a running shop: the typed client, asking user-orders, compare and
verify, the monolith's join, seed, bench, demos, the event pager, chaos and replay, the
trace store and its views. They return typed data; rendering it is render's job."""
