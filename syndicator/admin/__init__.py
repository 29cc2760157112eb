"""The admin pages, one module per area; importing them registers their ModelAdmins."""

from syndicator.admin import accounts, deliveries, posts, sources

__all__ = ["accounts", "deliveries", "posts", "sources"]
