"""Alembic revisions of the rlreg schema."""
