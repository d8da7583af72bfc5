"""Locks: the lock, its lease, and the per-backend lock service."""
