"""Following an article after it was posted (#12): the boundary between detection and action.

Detection (syndicator/watch.py, syndicator/webhook.py) decides that a stored post changed at its
source or was unpublished, and calls one of these after its transaction committed. What is done
on the networks (re-render and edit, delete or flag, per target policy) lives behind them.

This module is the interface only: the bodies log and queue nothing; the machinery that edits
and deletes network posts replaces them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from syndicator.models import Post

log = logging.getLogger(__name__)


def post_changed(post: Post) -> int:
    """A stored post's content changed at its source and was saved (post.version bumped).

    Called once per detected change, after the transaction that saved it committed. Returns how
    many edit follow-ups were queued.
    """
    log.info("post %s changed at its source (version %s)", post.pk, getattr(post, "version", "?"))
    return 0


def post_unpublished(post: Post, *, reason: str, actor: User | None = None) -> int:
    """A stored post was unpublished at its source (post.unpublished_at/_reason set), for `reason`.

    `actor` is the person who decided it, None when the software did. Called once per
    unpublishing, after the transaction that recorded it committed. Returns how many delete or
    flag follow-ups were queued.
    """
    log.info("post %s unpublished: %s", post.pk, reason)
    return 0
