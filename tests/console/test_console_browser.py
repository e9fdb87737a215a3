"""The compliance console in a real browser (headless Debian Chromium) against the local platform.

One flow, as compliance officers would do it (the platform runs with four-eyes approval on): sign in
with the local user, be told off by the form's validation, file a request for a subject whose rows
are in the lake and see it wait for approval; a second officer signs in, approves it, starts a run and
watches it reach COMPLETED without reloading, checks the verification summary and downloads the JSON
certificate, then files another request and cancels it. Along the way: no subject id in any URL the
page loaded, in browser storage or in the API function's log. Screenshots go to `$ETL_ARTIFACTS` (default
`.etl/artifacts/console`), printed at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from contracts import progress
from etl.local.console import ConsoleInfo
from etl.local.platform import PlatformState
from tests.console.conftest import CHROMIUM, DRIVER

pytestmark = pytest.mark.e2e
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1360,900"]
SUBJECT = str(random.Random(uuid.uuid4().int).randrange(600_000_000, 699_999_999))  # distinctive in any text
OTHER = str(int(SUBJECT) + 1)


def _client(state: PlatformState, service: str) -> Any:
    return boto3.client(service, endpoint_url=state.endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _land_customers(state: PlatformState) -> None:
    """Two customers in the lake (one is the subject); wait until transformed."""
    rows = [f"{SUBJECT},Console Subject,subject@example.org,+100000001,DE,2024-03-01",
            f"{OTHER},Someone Else,else@example.org,+100000002,FR,2024-03-02"]
    body = "customer_id,name,email,phone,country,signup_date\n" + "\n".join(rows) + "\n"
    landing = state.output("core", "landingBucket")
    _client(state, "s3").put_object(Bucket=landing, Key=f"customers/console-{uuid.uuid4().hex}.csv", Body=body.encode())
    ddb, table = _client(state, "dynamodb"), state.output("core", "stateTable")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        objs = progress.list_objects(ddb, table)
        if objs and all(o.get("stage") == "transformed" for o in objs):
            return
        time.sleep(0.3)
    raise AssertionError(f"sample object not transformed: {progress.list_objects(ddb, table)}")


@pytest.fixture(scope="module")
def artifacts() -> Path:
    out = Path(os.environ.get("ETL_ARTIFACTS", ROOT / ".etl" / "artifacts")) / "console"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.fail("Chromium and its driver are missing: `make setup-browser` installs them (Debian packages)")
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver, downloads
    finally:
        driver.quit()


def _wait(driver: Any, timeout: float = 60) -> WebDriverWait:
    """Generous: the machine may be busy; the waits end as soon as the page is there."""
    return WebDriverWait(driver, timeout, poll_frequency=0.2)


def _state_of(driver: Any) -> str:
    """The state badge, read in one step (the page redraws it while polling)."""
    return str(driver.execute_script(
        "const b = document.querySelector('#request .head .badge'); return b ? b.dataset.state : ''"))


def _click(driver: Any, element_id: str) -> None:
    """Click an element the page may be redrawing (polling): retry on a stale or missing element."""
    def attempt(d: Any) -> bool:
        try:
            d.find_element(By.ID, element_id).click()
            return True
        except (StaleElementReferenceException, NoSuchElementException):
            return False

    _wait(driver).until(attempt)


def _file(driver: Any, ids: str, ticket: str, *, now: bool) -> str:
    driver.find_element(By.ID, "nav-new").click()
    _wait(driver).until(ec.presence_of_element_located((By.ID, "file-form")))
    driver.find_element(By.ID, "subject-ids").send_keys(ids)
    driver.find_element(By.ID, "reason").send_keys("GDPR art. 17 (console test)")
    driver.find_element(By.ID, "ticket").send_keys(ticket)
    if now:
        driver.find_element(By.ID, "start-now").click()
    driver.find_element(By.ID, "file-submit").click()
    _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#request .head .badge")))
    return driver.find_element(By.ID, "request").get_attribute("data-id")


def test_file_follow_prove_and_cancel_in_a_browser(local: tuple[PlatformState, ConsoleInfo], browser: tuple[Any, Path],
                                                   artifacts: Path) -> None:
    state, site = local
    driver, downloads = browser
    _land_customers(state)
    _second_officer(state)
    shots: list[Path] = []

    def shot(name: str) -> None:
        shots.append(artifacts / f"{len(shots) + 1:02d}-{name}.png")
        driver.save_screenshot(str(shots[-1]))

    try:
        _flow(site, driver, downloads, shot)
    except Exception:
        shot("failure")
        print(f"\nconsole screenshots (failed run): {artifacts}\n{driver.find_element(By.TAG_NAME, 'main').text}")
        raise
    print(f"\nconsole screenshots: {artifacts}")
    assert all(p.exists() and p.stat().st_size > 10_000 for p in shots)


SECOND, SECOND_PASSWORD = "second-officer", f"Second-{uuid.uuid4().hex[:12]}-9a"


def _second_officer(state: PlatformState) -> None:
    """Another compliance officer (an administrator creates users: admin-only sign-up)."""
    idp, pool = _client(state, "cognito-idp"), state.stacks["erasure-local"].outputs["consoleUserPoolId"]
    idp.admin_create_user(UserPoolId=pool, Username=SECOND, MessageAction="SUPPRESS", TemporaryPassword=SECOND_PASSWORD)
    idp.admin_set_user_password(UserPoolId=pool, Username=SECOND, Password=SECOND_PASSWORD, Permanent=True)
    for group in ("erasure-filers", "erasure-approvers", "erasure-readers"):
        idp.admin_add_user_to_group(UserPoolId=pool, Username=SECOND, GroupName=group)


def _sign_in(driver: Any, username: str, password: str) -> None:
    """Fill and submit the form in one step, again from the start if the page redrew it meanwhile."""
    def attempt(d: Any) -> bool:
        try:
            d.find_element(By.ID, "username").send_keys(username)
            d.find_element(By.ID, "password").send_keys(password)
            d.find_element(By.ID, "sign-in-submit").click()
            return True
        except (StaleElementReferenceException, NoSuchElementException):
            return False

    _wait(driver).until(attempt)
    _wait(driver).until(ec.presence_of_element_located((By.ID, "requests")))


def _flow(site: ConsoleInfo, driver: Any, downloads: Path, shot: Any) -> None:
    # sign in: a wrong password is refused with Cognito's (value-free) reason, the right one lets us in
    driver.get(site.url)
    _wait(driver).until(ec.presence_of_element_located((By.ID, "username"))).send_keys(site.username)
    driver.find_element(By.ID, "password").send_keys("not-the-password")
    driver.find_element(By.ID, "sign-in-submit").click()
    _wait(driver).until(ec.text_to_be_present_in_element((By.ID, "sign-in"), "Incorrect user name or password"))
    shot("sign-in")
    driver.find_element(By.ID, "password").clear()
    driver.find_element(By.ID, "password").send_keys(site.password)
    driver.find_element(By.ID, "sign-in-submit").click()
    _wait(driver).until(ec.presence_of_element_located((By.ID, "requests")))
    assert "local-officer" in driver.find_element(By.ID, "user").text

    # the form checks the API's rules first, and names ids by position only
    driver.find_element(By.ID, "nav-new").click()
    _wait(driver).until(ec.presence_of_element_located((By.ID, "file-form")))
    driver.find_element(By.ID, "subject-ids").send_keys(f"{SUBJECT}\nnot-a-number")
    driver.find_element(By.ID, "file-submit").click()
    errors = _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#form-errors .error"))).text
    assert "subject_ids[1] is not a valid value of any subject column in scope" in errors
    assert "reason: say why" in errors and "not-a-number" not in errors and SUBJECT not in errors
    shot("validation")

    # file for the subject, start at once, and watch it move without reloading
    driver.find_element(By.ID, "subject-ids").clear()
    driver.find_element(By.ID, "subject-ids").send_keys(SUBJECT)
    driver.find_element(By.ID, "reason").send_keys("GDPR art. 17 (console test)")
    driver.find_element(By.ID, "ticket").send_keys("T-CONSOLE-1")
    driver.find_element(By.ID, "start-now").click()
    shot("file")
    driver.find_element(By.ID, "file-submit").click()
    _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#request .head .badge")))
    rid = driver.find_element(By.ID, "request").get_attribute("data-id")

    # four eyes: it waits, and its filer cannot approve it
    _wait(driver).until(ec.text_to_be_present_in_element((By.ID, "progress"), "Waiting for approval"))
    _wait(driver).until(ec.text_to_be_present_in_element((By.ID, "request"), "someone else must approve it"))
    assert not driver.find_elements(By.ID, "approve") and _state_of(driver) == "RECEIVED"
    shot("awaiting-approval")
    driver.find_element(By.ID, "sign-out").click()
    _sign_in(driver, SECOND, SECOND_PASSWORD)
    driver.get(f"{site.url}#/requests/{rid}")
    _click(driver, "approve")
    _wait(driver).until(ec.text_to_be_present_in_element((By.ID, "request"), f"cognito:{SECOND}"))
    _click(driver, "start-run")
    marker = driver.find_element(By.TAG_NAME, "header")  # a reload would replace it
    seen, progress_shot = {_state_of(driver)}, False
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and "COMPLETED" not in seen and "FAILED" not in seen:
        seen.add(_state_of(driver))
        if "ERASING" in seen and not progress_shot:
            progress_shot = True
            shot("progress")
        time.sleep(0.1)
    assert _state_of(driver) == "COMPLETED", f"request {rid} reached {seen}"
    assert marker.is_displayed()  # same document: the page updated itself
    _wait(driver).until(ec.text_to_be_present_in_element((By.ID, "verification-result"), "PASSED"))
    timeline = driver.find_element(By.ID, "timeline").text
    for step in ("RECEIVED", "SCHEDULED", "FINDING", "ERASING", "VERIFYING", "COMPLETED"):
        assert step in timeline
    assert f"approved by cognito:{SECOND}" in timeline
    assert "1 row(s) removed" in driver.find_element(By.ID, "progress").text
    shot("completed")

    # prove: the JSON certificate downloads, names the subject only by hash, and says verified
    driver.find_element(By.ID, "download-json").click()
    path = downloads / f"{rid}-certificate.json"
    _wait(driver).until(lambda _: path.exists() and path.stat().st_size > 0)
    text = path.read_text()
    cert = json.loads(text)
    assert cert["request"]["id"] == rid and cert["outcome"] == "COMPLETED" and cert["verification"]["passed"]
    assert cert["datasets"]["customers"]["rows_removed"] == 1 and cert["request"]["ticket"] == "T-CONSOLE-1"
    assert cert["request"]["caller"] == "cognito:local-officer"
    assert len(cert["subjects"]["hashes"]) == 1 and SUBJECT not in text
    driver.find_element(By.ID, "printable").click()
    _wait(driver).until(ec.presence_of_element_located((By.ID, "certificate")))
    printable = driver.find_element(By.ID, "certificate").text
    assert "Outcome: COMPLETED" in printable and cert["subjects"]["hashes"][0] in printable
    assert "What was checked" in printable and SUBJECT not in printable
    shot("certificate")

    # file another, do not start it, cancel it before anything is erased
    other = _file(driver, OTHER, "T-CONSOLE-2", now=False)
    assert other != rid
    _click(driver, "cancel")
    _wait(driver).until(ec.alert_is_present()).accept()
    _wait(driver).until(lambda d: _state_of(d) == "CANCELLED")
    assert not driver.find_elements(By.ID, "cancel")

    # the list: open requests by default; every state, searched by ticket, on demand
    driver.find_element(By.ID, "nav-requests").click()
    _wait(driver).until(ec.presence_of_element_located((By.ID, "list-status")))
    Select(driver.find_element(By.ID, "filter-state")).select_by_value("all")
    _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, f"#requests tr[data-id='{rid}']")))
    driver.find_element(By.ID, "filter-ticket").send_keys("t-console-2")
    rows = driver.find_elements(By.CSS_SELECTOR, "#requests tbody tr")
    assert [r.get_attribute("data-id") for r in rows] == [other]
    driver.find_element(By.ID, "filter-ticket").send_keys(Keys.BACKSPACE)
    _wait(driver).until(lambda d: {r.get_attribute("data-id") for r in
                                   d.find_elements(By.CSS_SELECTOR, "#requests tbody tr")} == {rid, other})
    shot("requests")

    # subject ids never in a URL the page loaded, in browser storage, or in the API function's log
    urls = driver.execute_script(
        "return performance.getEntries().map(e => e.name).concat([location.href, document.referrer])")
    storage = driver.execute_script("return JSON.stringify([Object.entries(localStorage), "
                                    "Object.entries(sessionStorage)])")
    assert not [u for u in urls if SUBJECT in u or OTHER in u]
    assert SUBJECT not in storage and OTHER not in storage
    api_log = (Path(os.environ["ETL_LOCAL_DIR"]) / "logs" / "etl-local-erasure-api.log").read_text()
    assert "erasure request received" in api_log and SUBJECT not in api_log and OTHER not in api_log

    # signing out ends the session: the API is unreachable with nothing in storage
    driver.find_element(By.ID, "sign-out").click()
    _wait(driver).until(ec.presence_of_element_located((By.ID, "username")))
    assert driver.execute_script("return sessionStorage.length + localStorage.length") == 0


def test_console_page_headers_keep_scripts_and_connections_to_itself(local: tuple[PlatformState, ConsoleInfo]) -> None:
    import urllib.error
    import urllib.request

    state, site = local
    with urllib.request.urlopen(site.url, timeout=10) as resp:
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["Referrer-Policy"] == "no-referrer" and resp.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in csp and f"connect-src 'self' {state.endpoint}" in csp
    with pytest.raises(urllib.error.HTTPError) as refused:  # no token, no data
        urllib.request.urlopen(site.url + "erasure-requests", timeout=10)
    assert refused.value.code == 401
