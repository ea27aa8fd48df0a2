"""The query API's former home, kept so that ``from processor.queries import Monitor`` (which
README documented before the house moved) keeps working: the query API is
:mod:`processor.store.queries`."""

from processor.store.queries import Monitor

__all__ = ["Monitor"]
