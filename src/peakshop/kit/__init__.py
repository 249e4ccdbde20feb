"""Domain-free helpers: pagination cursors, clocks, money, the batch writer and the SQLite
writer process."""
