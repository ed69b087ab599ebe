"""The exchange server and storage over real HTTP, on SQLite and PostgreSQL, fake identities."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from tests.exchange.conftest import COURSE, LIMIT, OTHER_COURSE, Exchange, targz, untargz

NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


async def release(ex: Exchange, aid: str = "ps1", token: str = "tok-inst") -> None:
    response = await ex.call(
        "PUT", f"assignments/{aid}", token, content=targz({"ps1.ipynb": NB, "data/x.csv": b"1,2"})
    )
    assert response.status_code == 201, response.text


async def submit(ex: Exchange, token: str, content: bytes = NB, aid: str = "ps1") -> dict:
    response = await ex.call(
        "POST", f"assignments/{aid}/submissions", token, content=targz({"ps1.ipynb": content})
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_learner_fetch_submit_list_own(exchange: Exchange) -> None:
    await release(exchange)
    listed = await exchange.call("GET", "assignments", "tok-alice")
    assert listed.status_code == 200
    [item] = listed.json()["assignments"]
    assert item["assignment_id"] == "ps1" and item["notebooks"] == ["ps1.ipynb"]

    fetched = await exchange.call("GET", "assignments/ps1", "tok-alice")
    assert fetched.status_code == 200
    assert fetched.headers["Content-Type"] == "application/gzip"
    assert untargz(fetched.content) == {"ps1.ipynb": NB, "data/x.csv": b"1,2"}

    first = await submit(exchange, "tok-alice", NB + b" ")
    assert first["student_id"] == "alice"
    assert first["timestamp"].endswith(" UTC")
    mine = (await exchange.call("GET", "my/submissions", "tok-alice")).json()["submissions"]
    assert [s["id"] for s in mine] == [first["id"]]


async def test_resubmission_keeps_both(exchange: Exchange) -> None:
    await release(exchange)
    first = await submit(exchange, "tok-alice", b'{"v": 1}')
    second = await submit(exchange, "tok-alice", b'{"v": 2}')
    assert first["id"] != second["id"] and first["timestamp"] < second["timestamp"]
    everyone = await exchange.call("GET", "submissions?assignment=ps1", "tok-inst")
    assert [s["id"] for s in everyone.json()["submissions"]] == [first["id"], second["id"]]
    latest = await exchange.call("GET", "submissions?assignment=ps1&latest=1", "tok-inst")
    assert [s["id"] for s in latest.json()["submissions"]] == [second["id"]]
    for sub, content in ((first, b'{"v": 1}'), (second, b'{"v": 2}')):
        files = untargz(
            (await exchange.call("GET", f"submissions/{sub['id']}", "tok-inst")).content
        )
        assert files["ps1.ipynb"] == content
        assert files["timestamp.txt"].decode() == sub["timestamp"]
        assert len(files["submission_secret.txt"]) == 64


async def test_learner_cannot_forge_server_files(exchange: Exchange) -> None:
    await release(exchange)
    forged = targz({"ps1.ipynb": NB, "timestamp.txt": b"2000-01-01 00:00:00.000000 UTC"})
    response = await exchange.call(
        "POST", "assignments/ps1/submissions", "tok-alice", content=forged
    )
    assert response.status_code == 201
    files = untargz(
        (await exchange.call("GET", f"submissions/{response.json()['id']}", "tok-inst")).content
    )
    assert files["timestamp.txt"].decode() == response.json()["timestamp"]


async def feedback_for(ex: Exchange, sub: dict, html: bytes, student: str) -> None:
    files = untargz((await ex.call("GET", f"submissions/{sub['id']}", "tok-inst")).content)
    response = await ex.call(
        "POST",
        "assignments/ps1/feedback",
        "tok-inst",
        content=json.dumps(
            {
                "student_id": student,
                "submission_secret": files["submission_secret.txt"].decode(),
                "notebooks": {"ps1": base64.b64encode(html).decode()},
            }
        ),
    )
    assert response.status_code == 201, response.text


async def test_learner_a_cannot_reach_learner_b(exchange: Exchange) -> None:
    """Every route, with ids of B's work and path tricks, gives A nothing of B's."""
    await release(exchange)
    secret_b = b'{"bob": "my secret answer"}'
    sub_b = await submit(exchange, "tok-bob", secret_b)
    await feedback_for(exchange, sub_b, b"<p>bob's feedback</p>", "bob")
    sub_a = await submit(exchange, "tok-alice")

    # Own views only contain own work.
    mine = (await exchange.call("GET", "my/submissions", "tok-alice")).json()["submissions"]
    assert {s["student_id"] for s in mine} == {"alice"} and sub_b["id"] not in str(mine)
    feedback = (await exchange.call("GET", "my/feedback", "tok-alice")).json()["feedback"]
    assert feedback == []
    bob_fb = (await exchange.call("GET", "my/feedback", "tok-bob")).json()["feedback"]
    assert base64.b64decode(bob_fb[0]["html"]) == b"<p>bob's feedback</p>"

    # Instructor routes are refused outright, whatever the id.
    for path in (
        "submissions",
        "submissions?student=bob",
        f"submissions/{sub_b['id']}",
        f"submissions/{sub_a['id']}",
    ):
        response = await exchange.call("GET", path, "tok-alice")
        assert response.status_code == 403, path
        assert response.json()["error"] == f"you do not have instructor access to course {COURSE}"

    # Query parameters cannot widen "my" to someone else.
    for path in ("my/submissions?student=bob", "my/feedback?student=bob", "my/feedback?user=bob"):
        body = (await exchange.call("GET", path, "tok-alice")).text
        assert "bob" not in body and sub_b["id"] not in body, path

    # Path tricks: none returns B's content.
    tricks = [
        f"my/submissions/../../submissions/{sub_b['id']}",
        f"my/%2e%2e/submissions/{sub_b['id']}",
        f"assignments/..%2Fsubmissions%2F{sub_b['id']}",
        f"assignments/{quote('../submissions/' + sub_b['id'], safe='')}",
        "assignments/..",
        "assignments/%2e%2e",
        f"assignments/ps1/../../submissions/{sub_b['id']}",
        f"my/feedback/{sub_b['id']}",
        f"my/submissions/{sub_b['id']}",
    ]
    for path in tricks:
        response = await exchange.call("GET", path, "tok-alice")
        assert response.status_code in (400, 403, 404), (path, response.status_code)
        assert b"my secret answer" not in response.content
        assert b"bob's feedback" not in response.content
    # Feedback release and release are instructor-only, too.
    response = await exchange.call(
        "POST", "assignments/ps1/feedback", "tok-alice", content=b'{"student_id": "bob"}'
    )
    assert response.status_code == 403
    response = await exchange.call("PUT", "assignments/ps1?force=1", "tok-alice", content=targz({}))
    assert response.status_code == 403
    # The files on disk are not named after learners, so no name can address them.
    assert not any("bob" in p.name for p in exchange.storage.root.rglob("*"))


async def test_non_member_and_anonymous(exchange: Exchange) -> None:
    await release(exchange)
    for method, path in (
        ("GET", "assignments"),
        ("GET", "assignments/ps1"),
        ("POST", "assignments/ps1/submissions"),
        ("GET", "my/submissions"),
        ("GET", "my/feedback"),
    ):
        content = targz({"ps1.ipynb": NB}) if method == "POST" else None
        response = await exchange.call(method, path, "tok-eve", content=content)
        assert response.status_code == 403, path
        assert response.json() == {
            "error": f"you do not have access to course {COURSE}",
            "status": 403,
        }
        assert (await exchange.call(method, path, None, content=content)).status_code == 401
        assert (await exchange.call(method, path, "forged", content=content)).status_code == 401
    # Eve's own course works, and an unknown course is a 404.
    assert (await exchange.call("GET", "assignments", "tok-eve", course=OTHER_COURSE)).json() == {
        "assignments": []
    }
    response = await exchange.call("GET", "assignments", "tok-eve", course="no-such-course")
    assert response.status_code == 404 and "no-such-course" in response.json()["error"]
    response = await exchange.call("GET", "assignments/ps9", "tok-alice")
    assert response.status_code == 404 and "ps9" in response.json()["error"]
    response = await exchange.call(
        "POST", "assignments/ps9/submissions", "tok-alice", content=targz({"a.ipynb": NB})
    )
    assert response.status_code == 404


async def test_size_limit_413(exchange: Exchange) -> None:
    await release(exchange)
    big = targz({"ps1.ipynb": NB, "blob.bin": __import__("os").urandom(LIMIT + 10)})
    response = await exchange.call("POST", "assignments/ps1/submissions", "tok-alice", content=big)
    assert response.status_code == 413
    assert "limit" in response.json()["error"]

    async def chunks():  # no Content-Length: the streamed count must catch it too
        for _ in range(8):
            yield b"\0" * (LIMIT // 4)

    response = await exchange.call(
        "POST", "assignments/ps1/submissions", "tok-alice", content=chunks()
    )
    assert response.status_code == 413
    # A small archive that unpacks to a huge one (a "zip bomb") is refused as well.
    bomb = targz({"ps1.ipynb": b"\0" * (LIMIT * 11)})
    assert len(bomb) < LIMIT
    response = await exchange.call("POST", "assignments/ps1/submissions", "tok-alice", content=bomb)
    assert response.status_code == 413
    assert (await exchange.call("GET", "my/submissions", "tok-alice")).json()["submissions"] == []


@pytest.mark.parametrize(
    "bad",
    [
        b"not a tarball",
        "../evil",
        "/etc/evil",
        "symlink",
    ],
)
async def test_malformed_uploads_400(exchange: Exchange, bad: object) -> None:
    import io
    import tarfile

    await release(exchange)
    if isinstance(bad, bytes):
        data = bad
    else:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            if bad == "symlink":
                info = tarfile.TarInfo("ps1.ipynb")
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                archive.addfile(info)
            else:
                info = tarfile.TarInfo(str(bad))
                info.size = 2
                archive.addfile(info, io.BytesIO(b"{}"))
        data = buffer.getvalue()
    response = await exchange.call("POST", "assignments/ps1/submissions", "tok-alice", content=data)
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert not (exchange.storage.root.parent / "evil").exists()
    assert not list(exchange.storage.root.glob(f"{COURSE}/submissions/*"))


async def test_instructor_release_collect_feedback(exchange: Exchange) -> None:
    await release(exchange)
    # Releasing again needs force.
    again = await exchange.call(
        "PUT", "assignments/ps1", "tok-inst", content=targz({"a.ipynb": NB})
    )
    assert again.status_code == 409 and "--force" in again.json()["error"]
    forced = await exchange.call(
        "PUT", "assignments/ps1?force=1", "tok-inst", content=targz({"ps1.ipynb": NB})
    )
    assert forced.status_code == 201 and forced.json()["notebooks"] == ["ps1.ipynb"]
    # Learners cannot release.
    assert (
        await exchange.call("PUT", "assignments/ps2", "tok-alice", content=targz({"a.ipynb": NB}))
    ).status_code == 403

    sub_dave = await submit(exchange, "tok-dave", b'{"dave": 1}')
    sub_alice = await submit(exchange, "tok-alice")
    listed = (await exchange.call("GET", "submissions?latest=1", "tok-inst")).json()["submissions"]
    assert {s["student_id"] for s in listed} == {"alice", "d@ve.o'neil"}
    only = await exchange.call(
        "GET", f"submissions?student={quote(sub_dave['student_id'])}", "tok-inst"
    )
    assert [s["id"] for s in only.json()["submissions"]] == [sub_dave["id"]]

    await feedback_for(exchange, sub_dave, b"<h1>dave 9/10</h1>", "d@ve.o'neil")
    # Feedback for the wrong student is refused: the secret belongs to dave's submission.
    files = untargz(
        (await exchange.call("GET", f"submissions/{sub_dave['id']}", "tok-inst")).content
    )
    wrong = await exchange.call(
        "POST",
        "assignments/ps1/feedback",
        "tok-inst",
        content=json.dumps(
            {
                "student_id": "alice",
                "submission_secret": files["submission_secret.txt"].decode(),
                "notebooks": {"ps1": base64.b64encode(b"x").decode()},
            }
        ),
    )
    assert wrong.status_code == 404
    malformed = await exchange.call("POST", "assignments/ps1/feedback", "tok-inst", content=b"{")
    assert malformed.status_code == 400
    bad_name = await exchange.call(
        "POST",
        "assignments/ps1/feedback",
        "tok-inst",
        content=json.dumps(
            {
                "student_id": "alice",
                "timestamp": sub_alice["timestamp"],
                "notebooks": {"../../x": base64.b64encode(b"x").decode()},
            }
        ),
    )
    assert bad_name.status_code == 400

    dave = (await exchange.call("GET", "my/feedback", "tok-dave")).json()["feedback"]
    assert [(f["notebook_id"], base64.b64decode(f["html"])) for f in dave] == [
        ("ps1", b"<h1>dave 9/10</h1>")
    ]
    mine = (await exchange.call("GET", "my/submissions", "tok-dave")).json()["submissions"]
    assert mine[0]["feedback"][0]["notebook_id"] == "ps1"
    # An admin counts as instructor everywhere.
    assert (await exchange.call("GET", "submissions", "tok-admin")).status_code == 200


async def test_errors_are_json(exchange: Exchange) -> None:
    response = await exchange.call("GET", "nonsense/route", "tok-alice")
    assert response.status_code == 404
    assert response.json()["status"] == 404
    response = await exchange.call("GET", "assignments", "tok-alice", course="Bad_Course")
    assert response.status_code == 400
