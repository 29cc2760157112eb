"""syndicator: watch RSS/Atom feeds and syndicate new posts to social networks."""

__version__ = "0.1.0"
