"""Postgres: the only code with SQL and asyncpg."""
