"""Orders: idempotent placement, queued processing, the order lifecycle."""
