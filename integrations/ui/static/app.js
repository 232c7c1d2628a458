// glassgate dashboard: the live feed's event stream, slider read-outs and audience tabs.
// Loaded from /ui/static under a CSP without 'unsafe-inline'; rows arrive rendered (and escaped) by the server.
(function () {
  "use strict";

  function startFeed(body) {
    var live = document.getElementById("live");
    var fresh = 0;
    var source = new EventSource(body.dataset.stream);
    function say(text, state) {
      if (live) { live.textContent = text; live.dataset.state = state; }
    }
    source.addEventListener("open", function () { say(fresh ? "live · " + fresh + " new" : "live", "open"); });
    source.addEventListener("error", function () { say("reconnecting…", "error"); });
    source.addEventListener("decision", function (ev) {
      var tpl = document.createElement("template");
      tpl.innerHTML = ev.data;
      var row = tpl.content.firstElementChild;
      if (!row || document.getElementById(row.id)) { return; }
      body.insertBefore(row, body.firstChild);
      var empty = document.getElementById("empty");
      if (empty) { empty.remove(); }
      fresh += 1;
      say("live · " + fresh + " new", "open");
      while (body.rows.length > 200) { body.deleteRow(body.rows.length - 1); }
    });
  }

  function echoSliders() {
    document.querySelectorAll("input[data-echo]").forEach(function (input) {
      var out = document.getElementById(input.dataset.echo);
      input.addEventListener("input", function () { if (out) { out.textContent = input.value; } });
    });
  }

  function tabs() {
    document.querySelectorAll(".tabs").forEach(function (nav) {
      nav.addEventListener("click", function (ev) {
        var a = ev.target.closest("a");
        if (!a) { return; }
        nav.querySelectorAll("a").forEach(function (x) { x.removeAttribute("aria-current"); });
        a.setAttribute("aria-current", "true");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var body = document.querySelector("tbody[data-stream]");
    if (body && window.EventSource) { startFeed(body); }
    echoSliders();
    tabs();
  });
})();
