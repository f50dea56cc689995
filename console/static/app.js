// Chronicle console: local times and live updates. Plain JavaScript, no
// build step. Everything from the server is set with textContent or
// setAttribute, never as HTML, so user data (stream IDs, payloads) stays
// text.
"use strict";

(function () {
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      if (!el.title) el.title = el.textContent;
      el.textContent = d.toLocaleString();
    });
  }

  function setStatus(ok, message) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.hidden = ok;
    el.textContent = ok ? "" : message + " Retrying…";
  }

  function applyFields(msg) {
    var text = msg.text || {}, points = msg.points || {};
    Object.keys(text).forEach(function (k) {
      document.querySelectorAll('[data-live="' + CSS.escape(k) + '"]').forEach(function (el) {
        el.textContent = text[k];
        if (el.hasAttribute("data-live-hide-empty")) el.hidden = text[k] === "";
      });
    });
    Object.keys(points).forEach(function (k) {
      document.querySelectorAll('[data-live-points="' + CSS.escape(k) + '"]').forEach(function (el) {
        el.setAttribute("points", points[k]);
      });
    });
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (text !== undefined) td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function prependEvents(table, events) {
    var body = table.tBodies[0];
    var max = Math.max(parseInt(table.getAttribute("data-page-size"), 10) || 0, 50) * 4;
    var empty = document.getElementById("log-empty");
    if (empty) empty.remove();
    events.forEach(function (ev) {
      var tr = document.createElement("tr");
      tr.className = "new";
      var code = document.createElement("code");
      code.textContent = ev.position;
      cell(tr).appendChild(code);
      var a = document.createElement("a");
      a.href = "stream?id=" + encodeURIComponent(ev.stream) + "&from=" + ev.version + "#v" + ev.version;
      a.textContent = ev.stream;
      cell(tr).appendChild(a);
      cell(tr, String(ev.version), "num");
      cell(tr, ev.type);
      cell(tr, String(ev.schema), "num");
      var t = document.createElement("time");
      t.setAttribute("datetime", ev.at);
      t.textContent = ev.at_utc;
      cell(tr).appendChild(t);
      var data = document.createElement("code");
      data.className = "data";
      data.textContent = ev.data;
      cell(tr).appendChild(data);
      localTimes(tr);
      body.insertBefore(tr, body.firstChild);
    });
    while (body.rows.length > max) body.deleteRow(body.rows.length - 1);
  }

  function live() {
    var el = document.querySelector("[data-live-view]");
    if (!el || !window.EventSource) return;
    var view = el.getAttribute("data-live-view");
    var url = "live?view=" + encodeURIComponent(view);
    if (view === "log") url += "&after=" + encodeURIComponent(el.getAttribute("data-after") || "");
    var es = new EventSource(url);
    es.addEventListener("fields", function (e) { setStatus(true); applyFields(JSON.parse(e.data)); });
    es.addEventListener("events", function (e) {
      setStatus(true);
      var events = JSON.parse(e.data);
      prependEvents(el, events);
      // Resume after the newest shown if the connection is re-opened.
      if (events.length) el.setAttribute("data-after", events[events.length - 1].position);
    });
    es.addEventListener("status", function (e) {
      var s = JSON.parse(e.data);
      setStatus(s.ok, s.message);
    });
    es.onerror = function () {
      if (view === "log") {
        // EventSource would reconnect to the old URL and send events
        // again: reopen after the newest event shown instead.
        es.close();
        setStatus(false, "The console is unreachable.");
        setTimeout(live, 2000);
        return;
      }
      setStatus(false, "The console is unreachable.");
    };
    window.addEventListener("pagehide", function () { es.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    var tz = document.getElementById("tz");
    try { if (tz) tz.textContent = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* keep UTC */ }
    live();
  });
})();
