"""Migration 0013 (#12) fills the identity of the posts already stored, and leaves in_feed unknown."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.test_migration_state_fields import APP, migrate, migration_named

pytestmark = pytest.mark.django_db(transaction=True)


def test_stored_posts_get_their_canonical_link_and_guid_key():
    this = migration_named("_article_life")
    loader = MigrationExecutor(connection).loader
    (before,) = [p.key[1] for p in loader.graph.node_map[(APP, this)].parents if p.key[0] == APP]
    latest = next(n for app, n in loader.graph.leaf_nodes() if app == APP)
    try:
        old = migrate(before)
        feed = old.get_model(APP, "Feed").objects.create(url="https://Site.example/feed/")
        posts = old.get_model(APP, "Post").objects
        wp = posts.create(
            feed=feed, guid="https://site.example/?p=9", url="https://site.example/a/?utm_source=x"
        )
        plain = posts.create(feed=feed, guid="tag:9", url="")

        new = migrate(this)
        rows = {p.pk: p for p in new.get_model(APP, "Post").objects.all()}
        assert (rows[wp.pk].canonical_url, rows[wp.pk].guid_key) == (
            "https://site.example/a",
            "https://site.example?p=9",
        )
        assert (rows[plain.pk].canonical_url, rows[plain.pk].guid_key) == ("", "guid:site.example:tag:9")
        assert not any(p.in_feed for p in rows.values())
        assert all(p.version == 1 and p.source_hash == "" for p in rows.values())
    finally:
        migrate(latest)
