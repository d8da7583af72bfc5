"""Participants: PostgreSQL, MySQL/MariaDB, Redis, remote."""
