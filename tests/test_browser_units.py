"""The browser's small parts that need no browser: an identity's cookies into a context and
back, the setting of blocked resource types, and finding processes by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from requests.cookies import RequestsCookieJar, create_cookie

from tests.cluster import wait_for
from voe.worker.browser.cookies import from_browser, to_browser
from voe.worker.browser.process import alive, find_browser, kill


def test_an_identitys_cookies_go_into_a_context_and_come_back():
    jar = RequestsCookieJar()
    jar.set_cookie(create_cookie("voe_consent", "yes", domain="127.0.0.1", path="/"))
    jar.set_cookie(create_cookie("session", "abc", domain=".airline.example", path="/app",
                                 secure=True, expires=2_000_000_000))
    cookies = sorted(to_browser(jar), key=lambda cookie: cookie["name"])
    assert cookies == [
        {"name": "session", "value": "abc", "domain": ".airline.example", "path": "/app",
         "secure": True, "expires": 2_000_000_000.0},
        {"name": "voe_consent", "value": "yes", "domain": "127.0.0.1", "path": "/",
         "secure": False}]
    back = RequestsCookieJar()
    from_browser(back, [*cookies, {"name": "voe_visitor", "value": "7", "domain": "127.0.0.1",
                                   "path": "/", "expires": -1, "httpOnly": True,
                                   "secure": False, "sameSite": "Lax"}])
    assert {(c.name, c.value, c.domain, c.path, c.expires) for c in back} == {
        ("session", "abc", ".airline.example", "/app", 2_000_000_000),
        ("voe_consent", "yes", "127.0.0.1", "/", None),
        ("voe_visitor", "7", "127.0.0.1", "/", None)}
    from_browser(back, [{"name": "voe_visitor", "value": "8", "domain": "127.0.0.1",
                         "path": "/"}])
    assert back.get("voe_visitor", domain="127.0.0.1") == "8"  # replaced, not doubled


def test_blocked_resource_types_are_checked(make_settings):
    assert make_settings(voe_browser_block=" image, font ").voe_browser_block == "image,font"
    assert make_settings(voe_browser_block="").voe_browser_block == ""
    with pytest.raises(ValueError, match="unknown resource type pictures"):
        make_settings(voe_browser_block="image,pictures")


def test_a_process_is_found_by_its_marker_and_killed_by_pid():
    marker = f"--voe-render-host=test-{os.getpid()}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        wait_for(lambda: find_browser(marker) == child.pid, 10, "the child's command line")
        assert alive(child.pid)
        kill(child.pid)
        child.wait(10)
        assert not alive(child.pid)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_browser_started_by_a_wrapper_script_is_found_not_the_script(tmp_path):
    marker = f"--voe-render-host=wrapped-{os.getpid()}"
    script = tmp_path / "browser"  # as Debian's /usr/bin/chromium-headless-shell: no exec
    script.write_text(f'#!/bin/sh -e\n"{sys.executable}" -c "import time; time.sleep(60)" "$@"\n')
    script.chmod(0o755)
    wrapper = subprocess.Popen([str(script), marker])
    try:
        def found_child() -> bool:
            found = find_browser(marker)
            return found is not None and found != wrapper.pid
        wait_for(found_child, 10, "the wrapped child")
        child = find_browser(marker)
        assert Path(f"/proc/{child}/stat").read_text().split()[3] == str(wrapper.pid)
        kill(child)
        assert wrapper.wait(10) != 0  # the script ends with its browser
    finally:
        if wrapper.poll() is None:
            wrapper.kill()


def test_images_and_fonts_are_switched_off_at_launch_and_other_types_intercepted():
    from voe.worker.browser.blocking import intercepted, launch_switches

    switches = launch_switches(frozenset({"font", "image", "media"}))
    assert switches[0] == "--disable-remote-fonts"
    assert switches[1].startswith("--blink-settings=") and switches[1].endswith(
        ",imagesEnabled=false") and len(switches) == 2
    assert intercepted(frozenset({"font", "image", "media"})) == ["Media"]
    assert intercepted(frozenset({"fetch", "xhr", "stylesheet"})) == [
        "Fetch", "Stylesheet", "XHR"]
    assert launch_switches(frozenset()) == [] and intercepted(frozenset()) == []


def test_a_fork_of_the_browser_holding_its_command_line_is_not_taken_for_it(tmp_path):
    marker = f"--voe-render-host=forked-{os.getpid()}"
    script = tmp_path / "browser"  # a wrapper script, its browser, and the browser's fork
    script.write_text(f'#!/bin/sh -e\n"{sys.executable}" -c "import os, time; os.fork(); '
                      f'time.sleep(60)" "$@"\n')
    script.chmod(0o755)
    wrapper = subprocess.Popen([str(script), marker], start_new_session=True)
    try:
        def browser_and_fork() -> list[int]:
            return [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                    if _cmdline_has(pid, marker) and pid != wrapper.pid]
        wait_for(lambda: len(browser_and_fork()) == 2, 10, "the browser and its fork")
        browser = next(pid for pid in browser_and_fork()
                       if Path(f"/proc/{pid}/stat").read_text().split()[3] == str(wrapper.pid))
        assert find_browser(marker) == browser
    finally:
        os.killpg(wrapper.pid, signal.SIGKILL)
        wrapper.wait(10)


def _cmdline_has(pid: int, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
