// The console's one script: it only follows the event streams and
// reloads the server-rendered page; every page reads without it.  Text from
// the service goes into the page with textContent, never as HTML.
"use strict";
(function () {
  // console-url puts the token in the address's fragment, which the
  // browser never sends: fill the field, then drop it from the address.
  var token = document.getElementById("token");
  if (token && location.hash.indexOf("#token=") === 0) {
    token.value = decodeURIComponent(location.hash.slice(7));
    history.replaceState(null, "", location.pathname);
  }

  var reloading = false;
  // Something a person is typing is never thrown away by a reload.
  function typing() {
    var fields = document.querySelectorAll("textarea, input[type=text]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) return true;
    }
    return false;
  }
  // A task's page reloads at once; a list waits a second, so that a busy
  // service does not keep it reloading.
  function refresh(note) {
    var n = document.getElementById("live-note") ||
      document.getElementById("live-list");
    if (n) n.textContent = note;
    if (reloading || typing()) return;
    reloading = true;
    setTimeout(function () { location.reload(); },
      document.getElementById("log") ? 250 : 1000);
  }

  var kinds = ["state", "info", "error", "model", "tool", "result",
    "checkpoint", "message"];
  var log = document.getElementById("log");
  if (log && window.EventSource && log.getAttribute("data-over") !== "1") {
    var task = Number(log.getAttribute("data-task"));
    var after = Number(log.getAttribute("data-after"));
    var es = new EventSource("/v1/tasks/" + task +
      "/events?follow=1&after=" + after);
    var add = function (ev) {
      var d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      var li = document.createElement("li");
      li.className = d.kind === "error" ? "ev-error" :
        d.kind === "state" ? "ev-state" : "ev-other";
      var t = document.createElement("time");
      t.textContent = String(d.ts);
      li.appendChild(t);
      li.appendChild(document.createTextNode(
        " [" + (d.stage || "-") + "] " + d.text));
      log.appendChild(li);
      return d;
    };
    kinds.forEach(function (k) {
      es.addEventListener(k, function (ev) {
        var d = add(ev);
        if (d && k === "state") refresh("Now " + d.state + ": reloading.");
      });
    });
    es.addEventListener("end", function () {
      es.close();
      refresh("The task has ended.");
    });
  }

  var list = document.getElementById("live-list");
  if (list && window.EventSource) {
    var all = new EventSource("/v1/events?follow=1&after=" +
      Number(list.getAttribute("data-after")));
    all.addEventListener("state", function () {
      refresh("Tasks changed: reloading.");
    });
  }
})();
