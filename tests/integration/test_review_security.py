"""The review app's security edges, in-process (Starlette's TestClient) against the real embedded S3 and Kafka:
sign-in, sessions, CSRF, the `next` target, image serving, and a full review through the HTTP layer."""

from __future__ import annotations

import re
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from starlette.routing import Route

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2; the pinned httpx 0.28 serves these requests the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from tagwatch.clients import s3_client
from tagwatch.moderation.ledger import LedgerHistory
from tagwatch.review.app import SESSION_COOKIE, create_app
from tagwatch.review.auth import Accounts
from tagwatch.review.serve import build_service
from tests.support.review import png, post_for_review, review_world

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def world(stack_settings, tmp_path_factory):
    settings = review_world(stack_settings)
    accounts = Accounts(tmp_path_factory.mktemp("review") / "accounts.yaml")
    accounts.add("alice", PASSWORD)
    accounts.add("bob", PASSWORD)
    service = build_service(settings)
    clock = Clock()
    service.queue.clock = clock
    app = create_app(settings, queue=service.queue, recorder=service.recorder, ledger=service.ledger,
                     history=service.history, s3=service.s3, accounts=accounts, metrics=service.metrics, clock=clock)
    try:
        yield settings, service, app, clock
    finally:
        service.producer.close(timeout=5)


def enqueue(settings, service, post_id: str, colour=(200, 30, 30)):
    request = post_for_review(settings, post_id, image=png(colour))
    assert service.queue.enqueue(request)
    return request


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def signed_in(app, name: str = "alice") -> TestClient:
    client = TestClient(app, follow_redirects=False)
    page = client.get("/signin")
    response = client.post("/signin", data={"name": name, "password": PASSWORD, "csrf_token": csrf(page.text),
                                            "next": "/"})
    assert response.status_code == 303 and response.headers["location"] == "/", response.text
    return client


def test_no_session_redirects_to_sign_in(world):
    _, _, app, _ = world
    client = TestClient(app, follow_redirects=False)
    for path in ("/", "/review/next", "/review/p1", "/images/x/images/a.png"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/signin?next="), path
    assert client.get("/", follow_redirects=False).headers["location"] == "/signin?next=%2F"
    assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200


def test_wrong_password_and_unknown_name_are_refused(world):
    _, _, app, _ = world
    client = TestClient(app, follow_redirects=False)
    for name, password in (("alice", "wrong password"), ("mallory", PASSWORD), ("alice", "")):
        token = csrf(client.get("/signin").text)
        response = client.post("/signin", data={"name": name, "password": password, "csrf_token": token})
        assert response.status_code == 401 and "Wrong name or password" in response.text
        assert client.get("/").status_code == 303  # still not signed in


def test_session_cookie_is_httponly_and_strict(world):
    _, _, app, _ = world
    client = TestClient(app, follow_redirects=False)
    response = client.get("/signin")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("target", ["//evil.example", "//evil.example/x", "https://evil.example/", "/\\evil.example",
                                    "javascript:alert(1)", "evil.example", "/\t/evil.example"])
def test_next_is_never_followed_off_site(world, target):
    _, _, app, _ = world
    client = TestClient(app, follow_redirects=False)
    token = csrf(client.get("/signin", params={"next": target}).text)
    response = client.post("/signin", data={"name": "alice", "password": PASSWORD, "csrf_token": token,
                                            "next": target})
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_a_local_next_is_followed(world):
    _, _, app, _ = world
    client = TestClient(app, follow_redirects=False)
    token = csrf(client.get("/signin?next=/review/next").text)
    response = client.post("/signin", data={"name": "alice", "password": PASSWORD, "csrf_token": token,
                                            "next": "/review/next"})
    assert response.headers["location"] == "/review/next"


def test_every_post_without_the_csrf_token_is_refused_and_records_nothing(world):
    settings, service, app, _ = world
    enqueue(settings, service, "csrf-1")
    client = signed_in(app)
    page = client.get("/review/csrf-1")
    assert page.status_code == 200
    lease_token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    verdict = {"action": "remove", "category": "weapons", "token": lease_token}
    assert client.post("/review/csrf-1", data=verdict).status_code == 403
    assert client.post("/review/csrf-1", data={**verdict, "csrf_token": "forged"}).status_code == 403
    # every POST route refuses a form without the token (new routes included)
    posts = [r.path for r in app.routes if isinstance(r, Route) and "POST" in (r.methods or ())]
    assert set(posts) >= {"/signin", "/signout", "/review/{post_id}", "/review/{post_id}/skip"}
    for path in posts:
        concrete = path.replace("{post_id}", "csrf-1")
        assert client.post(concrete, data={"name": "alice", "password": PASSWORD, **verdict}).status_code == 403, path
    history = LedgerHistory(service.s3, settings.s3.buckets.ledger)
    assert history.entries("csrf-1") == [] and service.queue.done("csrf-1") is None
    assert client.get("/").status_code == 200  # the failed sign-out did not sign out either
    assert 'tagwatch_review_invalid_requests_total{reason="csrf"}' in client.get("/metrics").text


def test_images_only_from_the_posts_bucket_under_the_images_prefix(world):
    settings, service, app, _ = world
    request = enqueue(settings, service, "img-1", colour=(10, 120, 200))
    client = signed_in(app)
    path = request.image_uri.removeprefix("s3://")
    ok = client.get(f"/images/{path}")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/png" and ok.content.startswith(b"\x89PNG")
    s3 = s3_client(settings.s3)
    posts, ledger = settings.s3.buckets.posts, settings.s3.buckets.ledger
    s3.put_object(Bucket=posts, Key="private/secret.png", Body=png((1, 2, 3)))
    s3.put_object(Bucket=posts, Key="images/test/page.png", Body=b"<html><script>alert(1)</script></html>")
    key = path.split("/", 1)[1]
    refused = [
        f"/images/{ledger}/{key}",                          # another bucket (that exists)
        f"/images/{ledger}/review/queue/img-1.json",
        f"/images/{posts}/private/secret.png",               # outside the images prefix
        f"/images/{posts}/images/../private/secret.png",     # traversal (as sent, unnormalised)
        f"/images/{posts}/images/%2e%2e/private/secret.png",  # encoded traversal
        f"/images/{posts}/images/%252e%252e/private/secret.png",  # double encoded
        f"/images/{posts}/images/..%2fprivate/secret.png",
        f"/images/{posts}/%2Fimages/test/x.png",             # absolute key
        f"/images/{posts}/images//test/x.png",
        f"/images/{posts}/images/test/page.png",             # under the prefix but not an image
        f"/images/{posts}/images/test/missing.png",
        f"/images/..%2f{ledger}/{key}",
    ]
    for url in refused:
        response = client.get(url)
        assert response.status_code in (403, 404), url
        assert b"alert(1)" not in response.content and not response.content.startswith(b"\x89PNG"), url


def test_a_review_through_the_http_layer(world):
    settings, service, app, clock = world
    enqueue(settings, service, "flow-1")
    client = signed_in(app)
    response = client.get("/review/next")
    assert response.status_code == 303 and response.headers["location"].startswith("/review/")
    post_id = response.headers["location"].rsplit("/", 1)[1]
    page = client.get(f"/review/{post_id}")
    assert page.status_code == 200 and "tagwatch-moderation version 7" in page.text and "p3" in page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": csrf(page.text), "token": token}
    bad = client.post(f"/review/{post_id}", data={**form, "action": "allow", "category": "weapons"})
    assert bad.status_code == 400 and "allow takes no categories" in bad.text
    bad = client.post(f"/review/{post_id}", data={**form, "action": "remove", "category": "no-such"})
    assert bad.status_code == 400
    done = client.post(f"/review/{post_id}", data={**form, "action": "remove", "category": ["weapons", "violence"],
                                                   "note": "a rifle"})
    assert done.status_code == 303 and done.headers["location"] == "/review/next"
    (kind, entry), = LedgerHistory(service.s3, settings.s3.buckets.ledger).entries(post_id)
    assert kind == "review" and entry["reviewer"] == "alice" and entry["categories"] == ["violence", "weapons"]
    assert entry["model_version"] == "7" and entry["policy_version"] == "p3"
    again = client.post(f"/review/{post_id}", data={**form, "action": "allow"})
    assert again.status_code == 409 and "not recorded" in again.text
    metrics = client.get("/metrics").text
    assert 'tagwatch_review_outcomes_total{action="remove"} 1.0' in metrics
    assert "tagwatch_review_time_to_decision_seconds_count 1.0" in metrics


def test_a_lost_lease_is_a_409_and_records_nothing(world):
    settings, service, app, clock = world
    enqueue(settings, service, "lost-1")
    alice, bob = signed_in(app, "alice"), signed_in(app, "bob")
    page = alice.get("/review/lost-1")
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    assert bob.get("/review/lost-1").status_code == 409  # leased to alice
    clock.now += timedelta(seconds=settings.review.lease_s + 1)
    assert bob.get("/review/lost-1").status_code == 200  # expired: bob takes it over
    lost = alice.post("/review/lost-1", data={"csrf_token": csrf(page.text), "token": token, "action": "allow"})
    assert lost.status_code == 409 and "Lease lost" in lost.text
    assert LedgerHistory(service.s3, settings.s3.buckets.ledger).entries("lost-1") == []
    assert "tagwatch_review_lease_expiries_total 1.0" in alice.get("/metrics").text
    clock.now = datetime.now(timezone.utc)


def test_the_review_page_shows_signals_and_pdq_neighbours(world):
    """A re-encoded, resized copy of an image reviewed before is linked as a PDQ near-duplicate (its bytes differ,
    so the same-image index cannot find it); an unrelated image is not; the request's signals are listed."""
    import io

    import numpy as np
    from PIL import Image

    from tagwatch.moderation.bank import pdq_hex
    from tagwatch.moderation.events import SignalScore

    settings, service, app, clock = world
    rng = np.random.default_rng(7)
    original = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).resize((192, 192))
    copy = original.resize((150, 150))
    unrelated = Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).resize((192, 192))

    def jpeg(image) -> bytes:
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=80)
        return out.getvalue()

    signals = [SignalScore(name="image", version="7", scores={"weapons": 0.7}),
               SignalScore(name="caption.offensive", version="alt-profanity-check 1.9.1",
                           scores={"offensive_text": 0.93}, detail="english profanity")]
    for post_id, image in (("pdq-a", original), ("pdq-b", copy), ("pdq-c", unrelated)):
        request = post_for_review(settings, post_id, image=jpeg(image))
        request = request.model_copy(update={"pdq": pdq_hex(Image.open(io.BytesIO(jpeg(image))))[0],
                                             "signals": signals})
        assert service.queue.enqueue(request)
    client = signed_in(app, "bob")
    page = client.get("/review/pdq-b")
    assert page.status_code == 200, page.text
    earlier = page.text[page.text.index('id="earlier"'):]
    assert "pdq-a" in earlier and "near-duplicate (PDQ distance" in earlier and "pdq-c" not in earlier
    table = page.text[page.text.index('id="signals"'):page.text.index("</table>", page.text.index('id="signals"'))]
    assert "caption.offensive" in table and "offensive_text 0.93" in table and "english profanity" in table
