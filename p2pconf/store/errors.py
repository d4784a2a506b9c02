"""The store's exceptions, shared by both databases."""

from __future__ import annotations


class StoreError(Exception):
    """A refused change; `code` is the API's error code ("busy": try again)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Conflict(Exception):
    """A row with that unique key exists already (raised by the databases, handled by Store)."""
