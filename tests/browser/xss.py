"""The XSS suite: hostile text on every page runs nothing and shows as text.

Every payload would set window.__pwned; each page is checked from inside:
the flag is unset, our one script is the only script, no image, no event
handler attribute, no javascript: link, and the payload text is visible.
"""
import os
import time

from selenium.webdriver.common.by import By

from browser import submit, URL, is_, login, ok, run, shot, text_of, wait

INSPECT = """
var bad = [];
if (window.__pwned !== undefined) bad.push("ran: " + window.__pwned);
var s = document.scripts;
if (s.length !== 1 || !/\\/static\\/console\\.js$/.test(s[0].src))
  bad.push(s.length + " scripts");
if (document.images.length) bad.push(document.images.length + " images");
document.querySelectorAll("*").forEach(function (e) {
  for (var i = 0; i < e.attributes.length; i++)
    if (/^on/i.test(e.attributes[i].name)) bad.push("handler " + e.tagName);
});
document.querySelectorAll("a").forEach(function (a) {
  if (!/^https?:/.test(a.href)) bad.push("link " + a.href);
});
return bad;
"""


def clean(d, where):
    bad = d.execute_script(INSPECT)
    is_(bad, [], where + ": nothing injected ran or became markup")


def shows(d, where, *texts):
    body = d.find_element(By.TAG_NAME, "body").get_attribute("textContent")
    for t in texts:
        ok(t in body, "%s: shows %s as text" % (where, t[:40]))


def page(d, path, where, *texts):
    d.get(URL + path)
    time.sleep(0.5)  # let console.js and any payload have their turn
    clean(d, where)
    shows(d, where, *texts)


def main(d):
    login(d, "<b>Mallory</b>")
    page(d, "/inbox", "inbox", "<script>window.__pwned='request'</script>",
         "<script>window.__pwned='plan'</script>")
    shows(d, "inbox", "<b>Mallory</b>")
    page(d, "/tasks", "tasks", "<img src=x onerror=\"window.__pwned='req-img'\">")
    page(d, "/tasks?q=%3Cscript%3Ewindow.__pwned%3D'q'%3C%2Fscript%3E",
         "a search for a script")
    is_(d.find_element(By.ID, "q").get_attribute("value"),
        "<script>window.__pwned='q'</script>", "... kept as the field's text")
    page(d, "/tasks/1", "the plan's gate",
         "<script>window.__pwned='plan'</script>",
         "javascript:window.__pwned='plan-js'",
         "</textarea><script>window.__pwned='textarea'</script>")
    box = d.find_element(By.ID, "plan-edit").get_attribute("value")
    ok(box.startswith("Plan <script>") and box.endswith("window.__pwned='attr'"),
       "the plan editor holds the whole plan, its </textarea> as text")
    shot(d, "xss-plan")

    d.find_element(By.ID, "reason").send_keys(
        "<script>window.__pwned='reason'</script>")
    submit(d, d.find_element(By.ID, "reject"))
    wait("the plan's gate again",
         lambda: d.find_element(By.ID, "approve-edited"), 60)
    clean(d, "after a hostile reason")
    shows(d, "the history", "<script>window.__pwned='reason'</script>")
    submit(d, d.find_element(By.ID, "approve"))

    wait("the implementation's gate",
         lambda: d.find_element(By.ID, "answer"), 90)
    time.sleep(0.5)
    clean(d, "the implementation's gate")
    shows(d, "the diff", "window.__pwned='fname'",
          "+<script>window.__pwned='diff'</script>", "+x\\xffy",
          "Summary <img src=x onerror=\"window.__pwned='summary'\">")
    names = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".fname")]
    ok(any("onerror" in n for n in names), "the hostile file name is a file's title")
    ok(any("\\377" in n or "\\xff" in n for n in names),
       "the file name that is not UTF-8 is shown escaped")
    shot(d, "xss-diff")

    # The other origin posts to the console with this browser's cookie.
    d.get(os.environ["EVIL_URL"])
    time.sleep(1.5)
    ok(d.current_url.endswith("/tasks/1/cancel") and "CSRF" in d.page_source,
       "a form from another origin reached the console and was refused")
    d.get(URL + "/tasks/1")
    ok(text_of(d, "h1 .state") != "cancelled", "... and cancelled nothing")

    submit(d, d.find_element(By.ID, "approve"))
    wait("completed", lambda: text_of(d, "h1 .state") == "completed", 120)
    time.sleep(0.5)
    clean(d, "the completed task")
    shows(d, "the completed task", "<script>window.__pwned='review'</script>",
          "<script>window.__pwned=\"verify\"</script>",
          "<script>window.__pwned='cmd'</script>")
    page(d, "/tasks", "tasks at the end")
    shot(d, "xss-task")


run(main)
