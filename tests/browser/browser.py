"""Helpers for the console's browser tests: TAP output, headless Chromium
through chromedriver, logging in, waiting.

The shell wrapper starts the real service and passes the console's URL,
its token and a directory for screenshots in the environment (CONSOLE_URL,
CONSOLE_TOKEN, SHOTS).  Every check is a TAP line; an exception is a
failure too (Bail out!), with a screenshot of where it happened.
"""
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import (StaleElementReferenceException,
                                        WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

URL = os.environ["CONSOLE_URL"]
TOKEN = os.environ["CONSOLE_TOKEN"]
SHOTS = os.environ["SHOTS"]
n = 0
failed = 0


def ok(cond, what):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n, what), flush=True)
    return cond


def is_(got, want, what):
    if not ok(got == want, what):
        print("#   got:  %r\n#   want: %r" % (got, want), flush=True)


def done():
    print("1..%d" % n, flush=True)
    sys.exit(1 if failed else 0)


def browser(javascript=True):
    o = webdriver.ChromeOptions()
    if not javascript:
        o.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--disable-gpu", "--window-size=1280,1000"):
        o.add_argument(a)
    o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    svc = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=svc, options=o)


def wait(what, fn, timeout=60):
    """Wait until fn() is true (exceptions count as not yet)."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
        except WebDriverException as e:  # a reload in between
            last = e
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (%s)" % (what, last))


def submit(d, el, timeout=30):
    """Click a form's button and wait until the browser has left the page:
    a wait for the next page's content must not find it on this one."""
    el.click()
    wait("the form's answer", lambda: stale(el), timeout)


def stale(el):
    try:
        el.is_enabled()
        return False
    except StaleElementReferenceException:
        return True


def text_of(d, css):
    return d.find_element(By.CSS_SELECTOR, css).text


def login(d, name):
    """Log in the way console-url says: the token in the fragment."""
    d.get(URL + "/login#token=" + TOKEN)
    wait("the script to fill the token",
         lambda: d.find_element(By.ID, "token").get_attribute("value") == TOKEN)
    d.find_element(By.ID, "name").send_keys(name)
    d.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait("the inbox", lambda: d.current_url.endswith("/inbox"))


def shot(d, name):
    os.makedirs(SHOTS, exist_ok=True)
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))


def run(main):
    d = browser()
    try:
        main(d)
    except Exception as e:  # noqa: BLE001 - any failure is reported
        try:
            shot(d, "failure")
        except Exception:  # noqa: BLE001
            pass
        print("# %s: %s" % (type(e).__name__, e), flush=True)
        print("Bail out! %s" % e, flush=True)
        d.quit()
        sys.exit(1)
    d.quit()
    done()
