"""The dashboard in a real browser, against a real controller and swarm.

Starts `skep controller` (SQLite store, one local worker, bearer tokens),
creates a throwaway swarm service, and drives headless Chromium through
Selenium as a user would:

- a wrong token is refused with a visible 401 message;
- the admin token signs in and the live stream connects;
- a 40-page job applied through the API is followed live: its progress bar
  changes at least twice while the job is Running, then reaches Succeeded
  with every file finished;
- the service is scaled from 1 to 2 replicas from the page, which Docker's
  service spec and the page both show;
- a read token sees the dashboard but its scale attempt shows a 403
  message, and the service is left as it was.

Run it with tests/dashboard/run.sh. Screenshots and the controller's log go
to $SKEP_ARTIFACTS (default target/artifacts). Everything it starts is
stopped and removed, pass or fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = Path(__file__).resolve().parents[2]
PAGES = 40
IMAGE = "skep-base:bookworm"
READY_TIMEOUT = 60
JOB_TIMEOUT = 300
SCALE_TIMEOUT = 15
SWARM_ROW_TIMEOUT = 30


class Failure(Exception):
    """A check did not hold; the message says which and what was seen."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(what: str, started: float) -> None:
    print(f"  ok  {what}  ({time.monotonic() - started:.1f} s)", flush=True)


def wait_until(what: str, timeout: float, probe, interval: float = 0.2):
    """Calls `probe` until it returns something truthy; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = probe()
        except WebDriverException as e:
            last = f"browser error: {e.msg}"
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what} (last seen: {last!r})")
        time.sleep(interval)


def bin_path(env: str, default: str) -> Path:
    p = Path(os.environ.get(env, default))
    p = p if p.is_absolute() else ROOT / p
    if not os.access(p, os.X_OK):
        raise Failure(f"{p} is not an executable; build it with `cargo build -p skep -p skep-testkit`")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*cmd: str, timeout: float = 60) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise Failure(f"`{' '.join(cmd)}` exited {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip()


class Api:
    """The controller's REST API with one token."""

    def __init__(self, base: str, token: str):
        self.base = base
        self.token = token

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        req = urllib.request.Request(self.base + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=20) as res:
                return res.status, json.load(res)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)


class Dashboard:
    """The page in headless Chromium, with the hooks app.js promises."""

    def __init__(self, url: str):
        opts = Options()
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1000", "--force-prefers-reduced-motion"):
            opts.add_argument(arg)
        chromium = shutil.which("chromium")
        if chromium:
            opts.binary_location = chromium
        driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
        self.url = url
        self.driver = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
        self.driver.set_window_size(1400, 1000)

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def open(self) -> None:
        self.driver.get(self.url)

    def sign_in(self, token: str) -> None:
        field = wait_until("the token field", 10, lambda: self._visible("#token"))
        field.clear()
        field.send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()

    def sign_out(self) -> None:
        self.driver.find_element(By.ID, "sign-out").click()

    def _visible(self, css: str):
        els = [e for e in self.driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        return els[0] if els else None

    def connection(self) -> str:
        return self.js("return document.getElementById('connection').dataset.state")

    def alerts(self) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, "#messages [role=alert] .message-text")
                if e.is_displayed()]

    def job(self, name: str):
        """The job row as the user sees it, or None."""
        return self.js(
            """
            const row = document.querySelector(`tr[data-job="${arguments[0]}"]`);
            if (!row) return null;
            const bar = row.querySelector('[data-role="progress"]');
            return {
              phase: row.querySelector('[data-role="phase"]').textContent,
              role: bar.getAttribute('role'),
              now: Number(bar.getAttribute('aria-valuenow')),
              max: Number(bar.getAttribute('aria-valuemax')),
              text: row.querySelector('[data-role="progress-text"]').textContent,
            };
            """,
            name,
        )

    def service_row(self, name: str):
        return self._visible(f'tr[data-service="{name}"]')

    def workers(self) -> list[dict]:
        return self.js(
            """
            return [...document.querySelectorAll('#workers tbody tr')].map((r) => ({
              id: r.querySelector('[data-role="id"]').textContent,
              pool: r.querySelector('[data-role="pool"]').textContent,
              slots: r.querySelector('[data-role="slots"]').textContent,
              done: Number(r.querySelector('[data-role="done"]').textContent),
              stale: !r.querySelector('[data-role="stale"]').hidden,
            }));
            """
        )

    def service_desired(self, name: str):
        return self.js(
            """
            const c = document.querySelector(`tr[data-service="${arguments[0]}"] [data-role="replicas"]`);
            return c ? c.dataset.desired : null;
            """,
            name,
        )

    def swarm_error(self) -> str | None:
        el = self._visible("#swarm-error")
        return el.text if el else None

    def scale(self, name: str, replicas: int) -> None:
        try:
            row = wait_until(f"service {name} in the services table", SWARM_ROW_TIMEOUT,
                             lambda: self.service_row(name))
        except Failure as e:
            said = self.swarm_error()
            raise Failure(f"{e}; the page says: {said}" if said else str(e)) from None
        field = row.find_element(By.CSS_SELECTOR, '[data-role="replicas-input"]')
        field.clear()
        field.send_keys(str(replicas))
        row.find_element(By.CSS_SELECTOR, '[data-action="scale"]').click()

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        log(f"screenshot: {path}")

    def quit(self) -> None:
        self.driver.quit()


def service_replicas(name: str) -> int | None:
    out = run("docker", "service", "inspect", "--format", "{{json .Spec.Mode.Replicated.Replicas}}", name)
    return None if out in ("", "null") else int(out)


def main() -> int:
    skep = bin_path("SKEP_BIN", "target/debug/skep")
    testkit = bin_path("SKEP_TESTKIT_BIN", "target/debug/skep-testkit")
    artifacts = Path(os.environ.get("SKEP_ARTIFACTS", "target/artifacts"))
    artifacts = artifacts if artifacts.is_absolute() else ROOT / artifacts
    artifacts.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="skep-dashboard-"))
    suffix = secrets.token_hex(4)
    job_name = f"dash-{suffix}"
    service = f"skep-dash-{suffix}"
    admin_token = f"admin-{secrets.token_hex(16)}"
    read_token = f"read-{secrets.token_hex(16)}"
    controller: subprocess.Popen | None = None
    controller_log = work / "controller.log"
    service_created = False
    page: Dashboard | None = None
    t0 = time.monotonic()
    failed = True
    try:
        print(f"dashboard test: job {job_name}, service {service}, work dir {work}")

        started = time.monotonic()
        run(str(testkit), "gen", "--pages-dir", str(work / "pages"), "--truth-dir", str(work / "truth"),
            "--pages", str(PAGES), "--seed", "5", timeout=300)
        (work / "tokens").write_text(f"# dashboard test\n{admin_token} admin\n{read_token} read\n")
        job_yaml = f"""apiVersion: skep.dev/v1
kind: BulkJob
metadata:
  name: {job_name}
  labels:
    purpose: dashboard-test
spec:
  source:
    path: {work / 'pages'}
  engine:
    languages: [eng]
    pageSegMode: 6
  output:
    path: {work / 'out'}
    formats: [txt, report]
  scaling:
    filesPerWorker: 20
    maxReplicas: 1
  maxAttempts: 2
"""
        (work / "job.yaml").write_text(job_yaml)
        check(f"generated {PAGES} pages, a tokens file and a job", started)

        started = time.monotonic()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with controller_log.open("wb") as out:
            controller = subprocess.Popen(
                [str(skep), "--store", f"sqlite:{work / 'skep.db'}", "controller",
                 "--listen", f"127.0.0.1:{port}", "--api-tokens-file", str(work / "tokens"), "--workers", "1",
                 "--allow-path", str(work)],
                cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

        def ready():
            if controller.poll() is not None:
                raise Failure(f"the controller exited with {controller.returncode}")
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until("/readyz", READY_TIMEOUT, ready)
        check(f"controller ready on {base}", started)

        started = time.monotonic()
        run("docker", "service", "create", "--detach", "--no-resolve-image", "--quiet",
            "--name", service, "--replicas", "1", "--label", "skep.test=dashboard",
            # skep's own (as its worker services are), so that the API may scale it
            "--label", "dev.skep.owned=true", IMAGE, "sleep", "infinity")
        service_created = True
        check(f"service {service} created with 1 replica", started)

        started = time.monotonic()
        page = Dashboard(base + "/")
        page.open()
        page.sign_in("wrong-token-" + secrets.token_hex(8))
        msg = wait_until("a 401 message for a wrong token", 10,
                         lambda: next((a for a in page.alerts() if "401" in a), None))
        check(f"a wrong token is refused with a visible message: {msg!r}", started)

        started = time.monotonic()
        page.sign_in(admin_token)
        wait_until("the live stream", 15, lambda: page.connection() == "live")
        check("signed in with the admin token; the event stream is live", started)

        started = time.monotonic()
        admin = Api(base, admin_token)
        status, answer = admin.call("POST", "/api/jobs", job_yaml.encode(), "application/yaml")
        if status != 201 or not answer.get("success"):
            raise Failure(f"POST /api/jobs answered {status}: {answer}")
        check(f"job {job_name} applied through the API (201)", started)

        started = time.monotonic()
        seen: list[int] = []
        changes = 0
        shot_running = False
        deadline = time.monotonic() + JOB_TIMEOUT
        row = None
        while True:
            row = page.job(job_name)
            if row and row["phase"] == "Running":
                if seen and row["now"] != seen[-1]:
                    changes += 1
                if not seen or row["now"] != seen[-1]:
                    seen.append(row["now"])
                if changes >= 1 and not shot_running and 0 < row["now"] < row["max"]:
                    page.screenshot(artifacts / "dashboard-running.png")
                    shot_running = True
            if row and row["phase"] in ("Succeeded", "Failed"):
                break
            if time.monotonic() > deadline:
                raise Failure(f"job {job_name} did not finish within {JOB_TIMEOUT} s (last row: {row})")
            time.sleep(0.1)
        if changes < 2:
            raise Failure(
                f"the progress bar changed {changes} time(s) while Running (values seen: {seen}); "
                "want at least 2: live updates are not reaching the page")
        check(f"progress bar changed {changes} times while Running (values {seen})", started)
        if row["phase"] != "Succeeded":
            raise Failure(f"job {job_name} ended {row['phase']}: {row}")
        if row["role"] != "progressbar" or row["now"] != PAGES or row["max"] != PAGES:
            raise Failure(f"the finished job's bar is not {PAGES}/{PAGES}: {row}")
        status, answer = admin.call("GET", f"/api/jobs/{job_name}")
        files = (answer.get("data") or {}).get("status", {}).get("files", {})
        if files.get("succeeded") != PAGES:
            raise Failure(f"the API says files {files}, want {PAGES} succeeded")
        check(f"job reached Succeeded; bar at {row['now']}/{row['max']}, API agrees ({files})", started)

        started = time.monotonic()

        def worker_listed():
            listed = page.workers()
            return any(w["done"] > 0 and not w["stale"] and w["slots"] == "1" for w in listed)

        wait_until("the workers table to list the local worker with files done", 30, worker_listed)
        check(f"the workers table lists {page.workers()}", started)
        if not shot_running:
            raise Failure("no screenshot could be taken while the job was running")

        started = time.monotonic()
        page.scale(service, 2)

        def scaled():
            bad = [a for a in page.alerts() if "Scale" in a]
            if bad:
                raise Failure(f"scaling from the page failed: {bad[-1]}")
            return service_replicas(service) == 2

        wait_until(f"docker to show {service} at 2 replicas", SCALE_TIMEOUT, scaled)
        check("scaled from the page: `docker service inspect` says 2 replicas", started)
        wait_until("the page to show desired 2", SCALE_TIMEOUT, lambda: page.service_desired(service) == "2")
        check("the services table shows desired 2", started)
        page.screenshot(artifacts / "dashboard-final.png")

        started = time.monotonic()
        page.sign_out()
        page.sign_in(read_token)
        wait_until("the live stream (read token)", 15, lambda: page.connection() == "live")
        page.scale(service, 3)
        msg = wait_until("a visible 403 message", 10,
                         lambda: next((a for a in page.alerts() if "403" in a), None))
        page.screenshot(artifacts / "dashboard-forbidden.png")
        if service_replicas(service) != 2:
            raise Failure(f"a read token changed the service: {service_replicas(service)} replicas")
        check(f"a read token's scale shows a visible 403 ({msg!r}); the service stays at 2", started)

        close = page.driver.find_element(By.CSS_SELECTOR, "#messages [role=alert] .message-close")
        close.click()
        wait_until("the message to be dismissed", 5, lambda: not any("403" in a for a in page.alerts()))
        check("the message can be dismissed", started)

        failed = False
        print(f"dashboard test: PASS in {time.monotonic() - t0:.1f} s")
        return 0
    except Failure as e:
        print(f"dashboard test: FAIL: {e}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print("dashboard test: FAIL: unexpected error (above)", file=sys.stderr)
        return 1
    finally:
        if page is not None:
            if failed:
                try:
                    page.screenshot(artifacts / "dashboard-failure.png")
                    for a in page.alerts():
                        print(f"  page message: {a}", file=sys.stderr)
                except WebDriverException:
                    pass
            page.quit()
        if controller is not None and controller.poll() is None:
            os.killpg(controller.pid, signal.SIGTERM)
            try:
                controller.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(controller.pid, signal.SIGKILL)
                controller.wait()
        if service_created:
            subprocess.run(["docker", "service", "rm", service], capture_output=True, timeout=60)
        if controller_log.exists():
            shutil.copy(controller_log, artifacts / "dashboard-controller.log")
            if failed:
                tail = controller_log.read_text(errors="replace").splitlines()[-30:]
                print("controller log (last 30 lines):", *tail, sep="\n  ", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"dashboard test: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
