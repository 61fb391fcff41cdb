"""The reviewer web app for real: `tagwatch review serve` in a subprocess on the embedded stack (SeaweedFS + Tansu),
driven by headless Chromium through Selenium, reviewing with the keyboard.

Review requests arrive the way the stream sends them (events on the review topic, first decisions in the ledger,
PNG images in the posts bucket); the app's feeder queues them. The test reviews three items with keys, leases a
fourth and kills the app mid-lease, restarts it with a 3 s lease, and shows the item come back and get reviewed by
another reviewer: every request ends with exactly one outcome, on the outcomes topic and in the ledger history, and
the first decisions stay as they were. It saves a screenshot of the queue page (docs/img/review-queue.png when
TAGWATCH_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tagwatch.clients import s3_client
from tagwatch.moderation.events import ReviewOutcome
from tagwatch.moderation.ledger import Ledger, LedgerHistory
from tagwatch.stack.ports import pick_free_ports
from tests.support.review import CATEGORIES, png, post_for_review, review_env, review_world, send_requests
from tests.support.stream import read_topic, wait_for

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PASSWORDS = {"alice": "alice's long password", "bob": "bob's long password"}
LEASE_S = 3


class ReviewServer:
    """`python -m tagwatch review serve --port P` with a log file; started, killed and restarted by the test."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log, self.proc = env, port, log, None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, **extra_env: str) -> None:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tagwatch", "review", "serve", "--port", str(self.port)],
                                     env={**self.env, **extra_env}, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        handle.close()
        wait_for(self._healthy, 60, f"the review app on {self.url}", logs=[self.log])

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the review app exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return urllib.request.urlopen(f"{self.url}/healthz", timeout=2).status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        return urllib.request.urlopen(f"{self.url}/metrics", timeout=5).read().decode()

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError("the review app did not stop within 20 s of SIGTERM")


@pytest.fixture
def browser(monkeypatch):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `make sysdeps` installs Debian's chromium and chromium-driver "
                    "(sysdeps.txt); this test never downloads a browser")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def keys(driver, *sequence: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in sequence:
        ActionChains(driver).send_keys(key).perform()


def text_of(driver, element_id: str) -> str | None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.ID, element_id).text
    except WebDriverException:
        return None


def review_with_keys(driver, *sequence: str) -> str:
    """On a review page: press the keys; wait until the browser has left that item. Returns its post id."""
    post_id = text_of(driver, "post-id")
    assert post_id, driver.page_source[:2000]
    keys(driver, *sequence)
    wait_for(lambda: text_of(driver, "post-id") != post_id, 20, f"the browser to leave {post_id}")
    assert text_of(driver, "error") is None
    return post_id


def sign_in(driver, base: str, name: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{base}/")
    assert "/signin?next=" in driver.current_url  # no session: sent to sign in
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[name], Keys.ENTER)
    wait_for(lambda: text_of(driver, "reviewer") == name, 15, f"{name} to be signed in")


def save_screenshot(driver, tmp_path: Path, name: str) -> None:
    """Always to the test's tmp dir; into docs/img too when TAGWATCH_UPDATE_SCREENSHOTS=1."""
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 5000
    if os.environ.get("TAGWATCH_UPDATE_SCREENSHOTS") == "1":
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "img" / name)


def queue_rows(driver) -> dict[str, str]:
    """post id -> status class of each row of the queue page."""
    from selenium.webdriver.common.by import By

    return {row.get_attribute("data-post"): row.get_attribute("class")
            for row in driver.find_elements(By.CSS_SELECTOR, "table.queue tbody tr")}


def test_review_with_the_keyboard_and_survive_a_restart_mid_lease(stack_settings, browser, tmp_path):
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    world = review_world(stack_settings)
    accounts = tmp_path / "review-accounts.yaml"
    env = review_env(world, TAGWATCH_REVIEW__ACCOUNTS_FILE=str(accounts), TAGWATCH_REVIEW__LEASE_S=str(LEASE_S),
                     TAGWATCH_REVIEW__SESSION_SECRET="test-session-secret-" + "x" * 20)
    for name, password in PASSWORDS.items():
        added = subprocess.run([sys.executable, "-m", "tagwatch", "review", "add-user", name, "--password-stdin"],
                               input=password + "\n", env=env, capture_output=True, text=True, timeout=60)
        assert added.returncode == 0 and f"added reviewer {name}" in added.stdout, added.stderr
    assert "long password" not in accounts.read_text()

    # five posts sent to review; the fifth has the first one's image (same bytes, same sha256)
    colours = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (200, 180, 30), (220, 40, 40)]
    scores = [(0.04, 0.31, 0.72), (0.55, 0.12, 0.08), (0.02, 0.64, 0.47), (0.18, 0.09, 0.51), (0.04, 0.31, 0.72)]
    requests = [post_for_review(world, f"post-{i}", image=png(colour), scores=dict(zip(CATEGORIES, score)),
                                reasons=[f"{c} {v:.2f} in review band [0.40, 0.90)"
                                         for c, v in zip(CATEGORIES, score) if 0.4 <= v < 0.9])
                for i, (colour, score) in enumerate(zip(colours, scores))]
    ledger = Ledger(s3_client(world.s3), world.s3.buckets.ledger)
    first_decisions = {r.post_id: ledger.get(r.post_id) for r in requests}
    send_requests(world, requests)

    (port,) = pick_free_ports("127.0.0.1", 1)
    server = ReviewServer(env, port, tmp_path / "review-app.log")
    server.start()
    try:
        sign_in(browser, server.url, "alice")
        wait_for(lambda: browser.refresh() or len(queue_rows(browser)) == 5, 45, "the feeder to queue 5 requests",
                 logs=[server.log], interval=1.0)
        assert text_of(browser, "depth") == "5"
        save_screenshot(browser, tmp_path, "review-queue.png")

        # three reviews, keyboard only: j opens the next item
        keys(browser, "j")
        wait_for(lambda: text_of(browser, "post-id") == "post-0", 15, "the first item")
        assert "tagwatch-moderation version 7" in text_of(browser, "model-version")
        image = browser.find_element(By.ID, "post-image")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 96
        reviewed = [review_with_keys(browser, "1", "3", "r")]       # remove: alcohol + weapons
        reviewed.append(review_with_keys(browser, "a"))             # allow
        reviewed.append(review_with_keys(browser, "2", "n", "knife in hand", "\ue00c", "r"))  # note, Esc, remove
        assert reviewed == ["post-0", "post-1", "post-2"]

        # the browser now shows post-3, leased to alice; the app dies mid-lease
        assert text_of(browser, "post-id") == "post-3"
        server.kill()
    finally:
        if server.proc.poll() is None:
            server.kill()

    server.start(TAGWATCH_REVIEW__LEASE_S=str(LEASE_S))
    try:
        browser.get(f"{server.url}/")  # the session cookie still holds: same secret
        assert text_of(browser, "reviewer") == "alice"
        assert queue_rows(browser).keys() == {"post-3", "post-4"}
        wait_for(lambda: browser.refresh() or queue_rows(browser).get("post-3") == "available", 15,
                 "post-3's lease to run out", interval=0.5)

        browser.find_element(By.CSS_SELECTOR, "header form button").click()  # sign out
        wait_for(lambda: "/signin" in browser.current_url, 10, "sign-out")
        sign_in(browser, server.url, "bob")
        keys(browser, "j")
        wait_for(lambda: text_of(browser, "post-id") == "post-3", 15, "post-3 to come back to bob")
        assert review_with_keys(browser, "a") == "post-3"
        assert text_of(browser, "post-id") == "post-4"
        earlier = text_of(browser, "earlier")
        assert earlier and all(word in earlier for word in ("post-0", "same image", "remove", "alice"))
        save_screenshot(browser, tmp_path, "review-item.png")
        keys(browser, "3", "r")
        wait_for(lambda: text_of(browser, "empty") is not None, 15, "the empty queue")
        assert "tagwatch_review_lease_expiries_total 1.0" in server.metrics()
        assert 'tagwatch_review_outcomes_total{action="allow"} 1.0' in server.metrics()
    finally:
        assert server.stop() == 0, server.log.read_text()[-3000:]

    # exactly one outcome per request: on the topic, in the ledger history; the first decisions unchanged
    records = read_topic(world, world.kafka.topics.review_outcomes, expect=5, timeout_s=30)
    outcomes = {o.post_id: o for o in (ReviewOutcome.model_validate_json(r.value) for r in records)}
    assert len(records) == 5 and sorted(outcomes) == [r.post_id for r in requests]
    assert {p: (o.action, o.categories, o.reviewer) for p, o in outcomes.items()} == {
        "post-0": ("remove", ["alcohol", "weapons"], "alice"),
        "post-1": ("allow", [], "alice"),
        "post-2": ("remove", ["violence"], "alice"),
        "post-3": ("allow", [], "bob"),
        "post-4": ("remove", ["weapons"], "bob"),
    }
    assert outcomes["post-2"].note == "knife in hand"
    history = LedgerHistory(s3_client(world.s3), world.s3.buckets.ledger)
    for request in requests:
        entries = history.entries(request.post_id)
        assert [(kind, entry["outcome_id"]) for kind, entry in entries] == [
            ("review", outcomes[request.post_id].outcome_id)]
        assert ledger.get(request.post_id) == first_decisions[request.post_id]
    assert time.monotonic() - started < 90
