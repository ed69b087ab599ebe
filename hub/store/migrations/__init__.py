"""Alembic environment and migrations of LearnHub's database (run by hub.store.upgrade)."""
