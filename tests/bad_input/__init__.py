"""Hostile and broken input: feeds made to break the poller, served from 127.0.0.1.

catalogue.py lists them, each with the outcome a user should see on the feed and in the log;
test_catalogue.py polls each through syndicator.watch.poll_feed.
"""
