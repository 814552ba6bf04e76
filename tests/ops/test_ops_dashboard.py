"""The dashboard in a real browser: ``ductwork serve --http`` on the examples, headless Chromium.

Chromium is Debian's (``make test`` installs it with ``scripts/ensure-chromium.sh``), driven by
Playwright; a missing browser fails the test. The screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ops_helpers import AUTH, TOKEN
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("DUCTWORK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Serving:
    """``ductwork serve --http 127.0.0.1:0`` on a copy of the example pipelines."""

    def __init__(self, project: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}
        env.update(PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1", DUCTWORK_TOKEN=TOKEN)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ductwork",
                "serve",
                "--http",
                "127.0.0.1:0",
                "--path",
                str(project / "pipelines"),
                "--state",
                str(project / "state.json"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=project,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line)

    def url(self, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            for line in self.out:
                found = re.search(r"dashboard on (http://127\.0\.0\.1:\d+)/", line)
                if found:
                    return found.group(1)
            time.sleep(0.05)
        raise AssertionError(f"no dashboard URL in:\n{''.join(self.out)}{''.join(self.err)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(20)
        for reader in self.readers:
            reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.stop()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Serving]]:
    shutil.copytree(EXAMPLES / "pipelines", tmp_path / "pipelines")
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    serving = Serving(tmp_path)
    try:
        yield serving.url(), serving
    finally:
        serving.close()


def seed(url: str, job: str, runs: int) -> None:
    """Trigger ``runs`` runs of ``job`` through the API, one after another."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(runs):
            assert client.post(f"/api/jobs/{job}/trigger", headers=AUTH).status_code == 202
            deadline = time.monotonic() + 20
            while client.get(f"/api/jobs/{job}").json()["running"]:
                assert time.monotonic() < deadline, f"{job} still running"
                time.sleep(0.05)


def launch_chromium(playwright: object) -> object:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard test needs Debian's chromium "
            f"(scripts/ensure-chromium.sh, run by `make test`, installs it)"
        )
    return playwright.chromium.launch(  # type: ignore[attr-defined]
        executable_path=CHROMIUM, args=CHROMIUM_ARGS
    )


@pytest.mark.timeout(120)
def test_the_dashboard_in_a_browser(served: tuple[str, Serving]) -> None:
    url, serving = served
    seed(url, "daily_orders", 3)
    seed(url, "large_orders", 2)
    with httpx.Client(base_url=url) as client:
        assert client.post("/api/jobs/large_orders/disable", headers=AUTH).status_code == 200
        jobs = {job["name"]: job for job in client.get("/api/jobs").json()["jobs"]}
        runs = client.get("/api/runs", params={"pipeline": "daily_orders"}).json()["runs"]
    assert sorted(jobs) == ["daily_orders", "large_orders"]
    newest = runs[0]

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page: Page = browser.new_page(viewport={"width": 1360, "height": 760})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url + "/")
        expect(page.locator("h1")).to_have_text("Jobs")
        rows = page.locator("tr.job")
        expect(rows).to_have_count(2)
        for name, job in jobs.items():
            row = page.locator(f'tr.job[data-job="{name}"]')
            expect(row.locator(".job-name")).to_have_text(name)
            expect(row.locator(".job-state .status")).to_have_text(job["state"])
            bars = row.locator("svg.runs-chart g.run")
            expect(bars).to_have_count(job["counts"]["runs"])
        expect(page.locator('tr.job[data-job="large_orders"] .job-state')).to_have_text("disabled")
        expect(page.locator('tr.job[data-job="daily_orders"] .job-state')).to_have_text("succeeded")
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))

        # the newest run of daily_orders is the right-most bar of its chart
        page.locator('tr.job[data-job="daily_orders"] svg.runs-chart a').last.click()
        page.wait_for_url(f"**/runs/daily_orders/{newest['run_id']}")
        expect(page.locator("h1")).to_have_text("Run of daily_orders")
        stages = page.locator("tr.stage")
        expect(stages).to_have_count(len(newest["stages"]))
        for stage in newest["stages"]:
            row = page.locator(f'tr.stage[data-stage="{stage["name"]}"]')
            expect(row.locator("td.num").nth(0)).to_have_text(f"{stage['records_in']:,}")
            expect(row.locator("td.num").nth(1)).to_have_text(f"{stage['records_out']:,}")
            expect(row.locator("svg.stage-bar rect")).to_have_count(3)
        expect(page.locator(".bottleneck")).to_have_count(1)
        assert page.locator("svg.stage-bar rect.busy").first.get_attribute("width") is not None
        page.screenshot(path=str(ARTIFACTS / "run.png"), full_page=True)

        # the job page, and back to the jobs
        page.goto(url + "/jobs/large_orders")
        expect(page.locator("tr.run")).to_have_count(2)
        page.locator("header a").click()
        expect(page.locator("tr.job")).to_have_count(2)
        browser.close()  # type: ignore[attr-defined]
    assert errors == []
    assert serving.stop() == 0
    assert "stopped: 5 run(s): 5 succeeded" in "".join(serving.out)


@pytest.mark.timeout(120)
def test_the_dashboard_refreshes_itself(served: tuple[str, Serving]) -> None:
    url, serving = served
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page: Page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(url + "/")
        row = page.locator('tr.job[data-job="daily_orders"]')
        expect(row.locator("svg.runs-chart g.run")).to_have_count(0)
        page.evaluate("window.notReloaded = true")
        seed(url, "daily_orders", 1)
        # the page's script fetches it again (every 5 s by default) and swaps the content in
        expect(row.locator("svg.runs-chart g.run")).to_have_count(1, timeout=15_000)
        expect(row.locator(".job-state")).to_have_text("succeeded")
        assert page.evaluate("window.notReloaded") is True
        browser.close()  # type: ignore[attr-defined]
    assert serving.stop() == 0
