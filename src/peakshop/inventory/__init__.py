"""Inventory and flash sales: stock that is conserved and never oversold."""
