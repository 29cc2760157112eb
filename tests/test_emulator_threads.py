"""The Threads emulator checks requests the way Threads does (docs/threads-api.md):
raw HTTP with httpx, no adapter, no database."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.emulators.threads import (
    CONTAINER_TTL,
    TOKEN,
    USER_ID,
    USERNAME,
    Harness,
    ThreadsEmulator,
    threads_length,
)


@pytest.fixture
def api() -> Iterator[ThreadsEmulator]:
    with ThreadsEmulator() as emulator:
        yield emulator


def client(api: ThreadsEmulator, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=f"{api.base_url}/v1.0", params={"access_token": token}, timeout=3)


def container(
    http: httpx.Client, text: str = "Nejat NewsLetter – January 2026", **extra: str
) -> httpx.Response:
    return http.post(f"/{USER_ID}/threads", data={"media_type": "TEXT", "text": text, **extra})


def publish(http: httpx.Client, creation_id: str) -> httpx.Response:
    return http.post(f"/{USER_ID}/threads_publish", params={"creation_id": creation_id})


def error_code(response: httpx.Response) -> int:
    return response.json()["error"]["code"]


def test_two_steps_publish_a_post_once(api):
    with client(api) as http:
        created = container(http, link_attachment="https://www.nejatngo.org/en/?p=1")
        assert created.status_code == 200 and api.posts() == []  # a container is not a post
        creation_id = created.json()["id"]
        status = http.get(f"/{creation_id}", params={"fields": "status,error_message"}).json()
        assert status == {"id": creation_id, "status": "FINISHED"}
        published = publish(http, creation_id)
        media_id = published.json()["id"]
        again = publish(http, creation_id)
        post = http.get(f"/{media_id}", params={"fields": "id,text,permalink"}).json()
        status = http.get(f"/{creation_id}", params={"fields": "status"}).json()["status"]

    assert published.status_code == 200 and media_id != creation_id
    assert again.status_code == 400 and "already been published" in again.json()["error"]["message"]
    assert [p["id"] for p in api.posts()] == [media_id]  # published once
    assert post["text"] == "Nejat NewsLetter – January 2026"
    assert post["permalink"].startswith(f"https://www.threads.net/@{USERNAME}/post/")
    assert status == "PUBLISHED"


def test_container_requests_are_checked(api):
    with client(api) as http:
        no_text = http.post(f"/{USER_ID}/threads", data={"media_type": "TEXT"})
        bad_type = http.post(f"/{USER_ID}/threads", data={"media_type": "REEL", "text": "x"})
        too_long = container(http, "a" * 501)
        fits = container(http, "a" * 500)
        emoji_long = container(http, "😀" * 126)  # 4 UTF-8 bytes each: 504
        links = container(http, " ".join(f"https://e.org/{n}" for n in range(6)))
        image = http.post(f"/{USER_ID}/threads", data={"media_type": "IMAGE", "text": "x"})
        bad_link = container(http, "x", link_attachment="javascript:alert(1)")
    for refused in (no_text, bad_type, too_long, emoji_long, links, image, bad_link):
        assert refused.status_code == 400 and error_code(refused) == 100, refused.text
    assert fits.status_code == 200
    assert threads_length("😀a") == 5


def test_token_and_owner_are_checked(api):
    api.add_user("999", "THAAother")
    with client(api, "THAAwrong") as wrong:
        assert error_code(container(wrong)) == 190
    with client(api, "THAAother") as other:
        theirs = other.post("/999/threads", data={"media_type": "TEXT", "text": "x"}).json()["id"]
        not_mine = other.post(f"/{USER_ID}/threads", data={"media_type": "TEXT", "text": "x"})
    with client(api) as http:
        foreign = publish(http, theirs)
        unknown = publish(http, "123")
        bearer = httpx.post(
            f"{api.base_url}/v1.0/me/threads",
            data={"media_type": "TEXT", "text": "x"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert not_mine.status_code == 400
    assert foreign.json()["error"]["error_subcode"] == 4279009
    assert unknown.json()["error"]["error_subcode"] == 4279009
    assert bearer.status_code == 200
    assert api.posts() == []


def test_a_container_expires_after_24_hours_and_an_image_one_processes_first(api):
    api.processing_polls = 1
    with client(api) as http:
        old = container(http).json()["id"]
        image = http.post(
            f"/{USER_ID}/threads", data={"media_type": "IMAGE", "image_url": "https://e.org/a.png"}
        ).json()["id"]
        too_early = publish(http, image)
        assert http.get(f"/{image}", params={"fields": "status"}).json()["status"] == "IN_PROGRESS"
        assert http.get(f"/{image}", params={"fields": "status"}).json()["status"] == "FINISHED"
        started = api.now()
        api.now = lambda: started + CONTAINER_TTL + 1
        expired = publish(http, old)
        status = http.get(f"/{old}", params={"fields": "status"}).json()["status"]
    assert too_early.status_code == 400
    assert expired.status_code == 400 and status == "EXPIRED"
    assert api.posts() == []


def test_the_publishing_limit_is_250_a_day(api):
    api.quota_total = 2
    with client(api) as http:
        for n in range(2):
            publish(http, container(http, f"post {n}").json()["id"])
        limit = http.get(f"/{USER_ID}/threads_publishing_limit", params={"fields": "quota_usage,config"})
        refused = publish(http, container(http, "post 3").json()["id"])
    assert limit.json() == {
        "data": [{"quota_usage": 2, "config": {"quota_total": 2, "quota_duration": 86400}}]
    }
    assert refused.status_code == 400 and error_code(refused) == 4
    assert len(api.posts()) == 2


def test_list_me_and_delete(api):
    with client(api) as http:
        first = publish(http, container(http, "first").json()["id"]).json()["id"]
        second = publish(http, container(http, "second").json()["id"]).json()["id"]
        listed = http.get(f"/{USER_ID}/threads", params={"fields": "id,text,permalink", "limit": 10}).json()
        me = http.get("/me", params={"fields": "id,username"}).json()
        deleted = http.delete(f"/{first}").json()
        gone = http.get(f"/{first}")
    assert [item["id"] for item in listed["data"]] == [second, first]
    assert me == {"id": USER_ID, "username": USERNAME}
    assert deleted == {"success": True, "deleted_id": first}
    assert gone.status_code == 400 and api.deleted == [first]


def test_step_faults_and_lost_answers(api):
    api.fail_step_next("publish", status=500)
    api.lose_next_answers(step="publish", seconds=2)
    with client(api) as http:
        creation_id = container(http).json()["id"]  # the container step is not affected
        failed = publish(http, creation_id)
        assert api.posts() == []
        with pytest.raises(httpx.ReadTimeout):
            http.post(f"/{USER_ID}/threads_publish", params={"creation_id": creation_id}, timeout=0.5)
        assert len(api.posts()) == 1  # published, though the answer was lost
    assert failed.status_code == 500


@pytest.mark.parametrize(
    "mode", ["server_error", "rate_limited", "bad_token", "rejected_content", "transient"]
)
def test_harness_faults_are_graph_errors(mode):
    with Harness() as harness, client(harness.emulator) as http:
        harness.inject(mode)
        created = container(http)
        answer = created if created.status_code != 200 else publish(http, created.json()["id"])
    assert answer.status_code in (400, 500)
    assert set(answer.json()["error"]) >= {"message", "type", "code", "fbtrace_id"}
    assert harness.sent() == []


def test_the_transient_answer_publishes_nothing():
    with Harness() as harness:
        reply = harness.transient_reply()
    assert reply.status == 500 and reply.json["error"]["code"] == 2


def test_the_outage_fails_only_the_first_publish_of_each_container():
    with Harness() as harness, client(harness.emulator) as http:
        harness.script_outage(0.1)
        first = container(http, "one").json()["id"]
        answers = [publish(http, first).status_code for _ in range(2)]
        for n in range(3):
            publish(http, container(http, f"post {n}").json()["id"])
    assert answers == [500, 200] and harness.outage_served()
