"""Domain-free helpers: pagination cursors, clocks, money."""
