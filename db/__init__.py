"""Postgres: migrations, the pool and every SQL statement the project runs."""
