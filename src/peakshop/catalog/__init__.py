"""The catalog: sellers, a category tree, products; filtered listing with cursor and offset
pagination, served through the two-level cache."""
