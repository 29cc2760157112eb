"""The Pinterest emulator checks requests the way Pinterest v5 does (docs/pinterest-api.md):
raw HTTP with httpx, no adapter, no database."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.emulators.pinterest import BOARD_ID, TOKEN, USERNAME, Harness, PinterestEmulator


@pytest.fixture
def api() -> Iterator[PinterestEmulator]:
    with PinterestEmulator() as emulator:
        yield emulator


def client(api: PinterestEmulator, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(
        base_url=f"{api.base_url}/v5", headers={"Authorization": f"Bearer {token}"}, timeout=3
    )


def pin_body(api: PinterestEmulator, **fields: object) -> dict[str, object]:
    return {
        "board_id": BOARD_ID,
        "title": "Nejat NewsLetter – January 2026",
        "description": "The January issue is out.",
        "alt_text": "The newsletter's cover",
        "link": "https://www.nejatngo.org/en/?p=90006",
        "media_source": {"source_type": "image_url", "url": api.image_url()},
        **fields,
    }


def test_a_pin_is_made_and_can_be_read_edited_and_deleted(api):
    with client(api) as http:
        made = http.post("/pins", json=pin_body(api))
        pin_id = made.json()["id"]
        read = http.get(f"/pins/{pin_id}").json()
        edited = http.patch(f"/pins/{pin_id}", json={"title": "Nejat NewsLetter (corrected)"})
        media = http.patch(f"/pins/{pin_id}", json={"media_source": {"source_type": "image_url", "url": "x"}})
        listed = http.get(f"/boards/{BOARD_ID}/pins").json()
        deleted = http.delete(f"/pins/{pin_id}")
        gone = http.get(f"/pins/{pin_id}")
    assert made.status_code == 201 and read["link"] == "https://www.nejatngo.org/en/?p=90006"
    assert edited.json()["title"] == "Nejat NewsLetter (corrected)"
    assert media.status_code == 400  # the media of a Pin cannot be changed
    assert [p["id"] for p in listed["items"]] == [pin_id]
    assert deleted.status_code == 204 and gone.status_code == 404
    assert [p["id"] for p in api.pins()] == [pin_id] and api.deleted == [pin_id]
    assert api.pins()[0]["text"] == "Nejat NewsLetter – January 2026\nThe January issue is out."


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"title": "t" * 101}, 400),
        ({"description": "d" * 501}, 400),
        ({"alt_text": "a" * 501}, 400),
        ({"link": "ftp://example.org/x"}, 400),
        ({"media_source": {"source_type": "image_base64", "data": "x"}}, 400),
        ({"media_source": {"source_type": "image_url", "url": ""}}, 400),
        ({"media_source": None}, 400),
        ({"board_id": "42"}, 404),
    ],
)
def test_pin_requests_are_checked(api, fields, status):
    with client(api) as http:
        answer = http.post("/pins", json=pin_body(api, **fields))
    assert answer.status_code == status
    assert set(answer.json()) == {"code", "message"}
    assert api.pins() == []


def test_limits_are_inclusive_and_a_missing_image_is_refused(api):
    with client(api) as http:
        fits = http.post(
            "/pins", json=pin_body(api, title="t" * 100, description="d" * 500, alt_text="a" * 500)
        )
        missing = http.post(
            "/pins",
            json=pin_body(api, media_source={"source_type": "image_url", "url": api.image_url("none.png")}),
        )
        form = http.post("/pins", data={"board_id": BOARD_ID})
    assert fits.status_code == 201
    assert missing.status_code == 400 and "could not fetch" in missing.json()["message"]
    assert form.status_code == 400


def test_token_and_board_owner_are_checked(api):
    api.add_board("777", owner="someone_else")
    with client(api, "pina_wrong") as wrong:
        denied = wrong.post("/pins", json=pin_body(api))
        account = wrong.get("/user_account")
    with client(api) as http:
        foreign = http.post("/pins", json=pin_body(api, board_id="777"))
        me = http.get("/user_account").json()
        board = http.get(f"/boards/{BOARD_ID}").json()
        no_board = http.get("/boards/123")
    assert denied.status_code == 401 and account.status_code == 401
    assert foreign.status_code == 403
    assert me["username"] == USERNAME and board["id"] == BOARD_ID and no_board.status_code == 404
    assert api.pins() == []


def test_a_lost_answer_still_makes_the_pin(api):
    api.lose_next_answers(seconds=2)
    with client(api) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/pins", json=pin_body(api), timeout=0.5)
    assert len(api.pins()) == 1


@pytest.mark.parametrize(
    "mode", ["server_error", "unavailable", "rate_limited", "bad_token", "forbidden", "rejected_content"]
)
def test_harness_faults(mode):
    with Harness() as harness, client(harness.emulator) as http:
        harness.inject(mode)
        answer = http.post("/pins", json=pin_body(harness.emulator))
    assert answer.status_code >= 400
    if mode == "rate_limited":
        assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
    assert harness.sent() == []


def test_the_transient_answer_is_a_429_with_its_wait():
    reply = Harness().transient_reply()
    assert reply.status == 429 and reply.headers["Retry-After"] == "1"


def test_the_outage_fails_only_the_first_try_of_each_pin():
    with Harness() as harness, client(harness.emulator) as http:
        harness.script_outage(0.1)
        answers = [http.post("/pins", json=pin_body(harness.emulator)).status_code for _ in range(2)]
        for n in range(3):
            http.post("/pins", json=pin_body(harness.emulator, link=f"https://www.nejatngo.org/{n}"))
    assert answers == [500, 201] and harness.outage_served()
