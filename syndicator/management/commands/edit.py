"""``syndicator edit``: re-render a post and edit it on the networks it went to (#12)."""

from __future__ import annotations

from syndicator.cli_util import FollowupCommand
from syndicator.models import Delivery


class Command(FollowupCommand):
    help = (
        "Update a post (by id or exact URL) everywhere: re-render it and edit it on every target it "
        "went to whose network still allows it; prints, per target, whether the edit was asked or why "
        "not. A worker makes the edits (see `syndicator log`)."
    )
    action = Delivery.Followup.EDIT
    words = {
        (False, True): "edit asked",
        (False, False): "not edited",
        (True, True): "would be edited",
        (True, False): "would not be edited",
    }
