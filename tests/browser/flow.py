"""A task from submission to a branch ready to merge, in the browser only.

Log in; submit; see the task in the inbox; open its plan; reject it with
a reason and see the new plan arrive without reloading by hand; edit the
plan and approve the edited text; read the whole diff (a long file folded,
not cut) and approve it; follow the log until completed.
"""
import os

from selenium.webdriver.common.by import By

from browser import submit, TOKEN, URL, browser, is_, login, ok, run, shot, text_of, wait

REPO = os.environ["REPO"]
EDITED = ("Write greet.sh that prints Hello, and data.txt of 450 lines "
          "(EDIT-MARK, edited in the browser).")


def content(d, css):
    """All the text of an element, folded parts too."""
    return d.find_element(By.CSS_SELECTOR, css).get_attribute("textContent")


def main(d):
    login(d, "Ada Lovelace")
    c = {k["name"]: k for k in d.get_cookies()}
    ok("orch_session" in c and c["orch_session"]["httpOnly"],
       "the session cookie is HttpOnly")
    is_(c.get("orch_session", {}).get("sameSite"), "Strict",
        "... and SameSite=Strict")
    ok("orch_session" not in d.execute_script("return document.cookie"),
       "the page's script cannot read it")
    ok("#token" not in d.current_url, "the token left the address bar")

    d.get(URL + "/submit")
    d.find_element(By.ID, "request").send_keys("Add a greeting script")
    d.find_element(By.ID, "repo").send_keys(REPO)
    d.find_element(By.ID, "verify").send_keys("sh greet.sh")
    d.find_element(By.CSS_SELECTOR, "form.act button").click()
    wait("the new task's page", lambda: d.current_url.endswith("/tasks/1"))
    ok(True, "submitted from the browser")

    d.get(URL + "/inbox")
    link = wait("task 1 in the inbox (live)",
                lambda: d.find_element(By.LINK_TEXT, "Open task 1"))
    ok("the plan to approve" in text_of(d, ".inbox"),
       "the inbox says what task 1 waits for")
    ok("Add a greeting script" in text_of(d, ".inbox"),
       "... with its request")
    ok("PLAN-ONE" in text_of(d, ".inbox"), "... and its plan's summary")
    ok("waiting for" in text_of(d, ".inbox .meta"), "... and how long")
    shot(d, "inbox")
    link.click()

    wait("the task page", lambda: d.current_url.endswith("/tasks/1"))
    ok("PLAN-ONE" in text_of(d, "#plan-text"), "the plan is on the page")
    d.find_element(By.ID, "reason").send_keys("Add a test too")
    submit(d, d.find_element(By.ID, "reject"))
    wait("the re-plan to arrive live",
         lambda: "PLAN-TWO" in text_of(d, "#plan-text"), 60)
    ok(True, "the new plan arrived without reloading by hand")
    hist = content(d, "#sec-plan")
    ok("Add a test too" in hist and "PLAN-ONE" in hist,
       "the history shows the rejected plan and its reason")
    ok("Ada Lovelace" in hist, "... and who rejected it")

    box = d.find_element(By.ID, "plan-edit")
    is_(box.get_attribute("value").strip().startswith("Plan v2"), True,
        "the editor holds the current plan")
    box.clear()
    box.send_keys(EDITED)
    submit(d, d.find_element(By.ID, "approve-edited"))
    ok(wait("the edited plan approved",
            lambda: EDITED in text_of(d, "#plan-text")),
       "the page shows the edited plan")

    btn = wait("the implementation to approve (live)",
               lambda: d.find_element(By.ID, "approve"), 90)
    is_(btn.text, "Approve the implementation",
        "the implementation waits for a person")
    files = d.find_elements(By.CSS_SELECTOR, "#diff details.file")
    is_(len(files), 2, "the diff has its two files")
    names = [f.find_element(By.CSS_SELECTOR, ".fname").text for f in files]
    ok(any("data.txt" in x for x in names) and
       any("greet.sh" in x for x in names), "... named")
    long_ = [f for f in files if "data.txt" in f.text][0]
    ok(long_.get_attribute("open") is None,
       "the long file's diff is folded")
    body = long_.get_attribute("textContent")
    ok("+line 1\n" in body and "+line 450\n" in body,
       "... and whole: its first and last lines are there")
    is_(len(long_.find_elements(By.CSS_SELECTOR, "pre.diff span.a")), 450,
        "... every added line, coloured as added")
    long_.find_element(By.TAG_NAME, "summary").click()
    ok(long_.get_attribute("open") is not None, "a click unfolds it")
    shot(d, "task-diff")
    submit(d, btn)

    wait("completed (live)",
         lambda: text_of(d, "h1 .state") == "completed", 120)
    ok(True, "the page followed the task to completed")
    ok("completed" in content(d, "#log"), "the log says so")
    ok("orch/task-1" in text_of(d, "#sec-actions"),
       "the branch ready to merge is named")
    ok("passed" in content(d, "#sec-verification"),
       "the verification passed")
    rows = d.find_elements(By.CSS_SELECTOR, "#sec-usage tbody tr")
    stages = [r.find_element(By.TAG_NAME, "td").text for r in rows]
    ok("planning" in stages and "implementing" in stages,
       "usage by stage: a row per stage that called the model")
    ok(all(int(c.text) >= 0 for r in rows
           for c in r.find_elements(By.TAG_NAME, "td")[1:]),
       "... in numbers")
    shot(d, "task")

    # Readable with a screen reader: one h1, every field labelled.
    for path in ("/inbox", "/tasks", "/tasks/1", "/submit"):
        d.get(URL + path)
        is_(d.execute_script(A11Y), [], path + ": one h1, every field labelled")

    # A phone's width: nothing wider than the screen but the diff's own
    # scrolling box.
    d.set_window_size(390, 844)
    for path in ("/inbox", "/tasks", "/tasks/1"):
        d.get(URL + path)
        wide = d.execute_script(WIDE)
        is_(wide, [], path + " fits a 390 px wide screen")
    shot(d, "task-phone")

    # Without JavaScript: log in by hand, and the task page reads whole.
    nojs = browser(javascript=False)
    try:
        nojs.get(URL + "/login")
        nojs.find_element(By.ID, "token").send_keys(TOKEN)
        nojs.find_element(By.ID, "name").send_keys("No Script")
        submit(nojs, nojs.find_element(By.CSS_SELECTOR, "form.login button"))
        nojs.get(URL + "/tasks/1")
        ok(EDITED in nojs.find_element(By.ID, "plan-text").text,
           "without JavaScript: the plan reads")
        ok("+line 450" in nojs.find_element(By.ID, "diff")
           .get_attribute("textContent"), "... and the whole diff")
        ok("completed" in nojs.find_element(By.ID, "log")
           .get_attribute("textContent"), "... and the log")
    finally:
        nojs.quit()


# The elements wider than the screen (none inside a scrolling box).
WIDE = """
var bad = [], w = document.documentElement.clientWidth;
document.querySelectorAll("body *").forEach(function (e) {
  if (e.closest("pre.diff")) return;
  var r = e.getBoundingClientRect();
  if (r.right > w + 1) bad.push(e.tagName + "." + e.className);
});
return bad.slice(0, 5);
"""

A11Y = """
var bad = [];
if (document.querySelectorAll("h1").length !== 1) bad.push("h1 count");
document.querySelectorAll("input:not([type=hidden]), textarea, select")
  .forEach(function (e) { if (!e.labels || !e.labels.length) bad.push(e.name); });
return bad;
"""

run(main)
