// alarmer dashboard: theme, live updates, the plot, and the buttons.
// Plain JavaScript, no build step.  Every write goes through the v2 API.
(function () {
  "use strict";

  var STATE_VAR = { "alarm": "--alarm", "ok": "--ok", "insufficient data": "--insufficient" };

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function announce(text) {
    var status = document.getElementById("status");
    if (status) { status.textContent = text; }
  }

  // -- theme ---------------------------------------------------------------
  function applyTheme() {
    var saved = null;
    try { saved = localStorage.getItem("alarmer-theme"); } catch (e) { saved = null; }
    document.documentElement.dataset.theme = saved || "auto";
  }

  function toggleTheme() {
    var now = document.documentElement.dataset.theme;
    var dark = now === "dark" ||
      (now === "auto" && window.matchMedia("(prefers-color-scheme: dark)").matches);
    var next = dark ? "light" : "dark";
    try { localStorage.setItem("alarmer-theme", next); } catch (e) { /* private mode */ }
    document.documentElement.dataset.theme = next;
    announce("Theme: " + next);
    drawPlot();
  }

  // -- the plot ------------------------------------------------------------
  var plot = null;

  function drawPlot() {
    var holder = document.getElementById("plot");
    var source = document.getElementById("plot-data");
    if (plot) { plot.destroy(); plot = null; }
    if (!holder || !source || typeof uPlot === "undefined") { return; }
    var doc = JSON.parse(source.textContent);
    var times = doc.times || [];
    var marks = (doc.marks || []).slice();
    var threshold = times.map(function () { return doc.threshold; });
    var drawn = [];
    var fg = css("--fg"), line = css("--line");
    var axis = { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line } };
    var opts = {
      width: Math.max(holder.clientWidth, 280),
      height: 320,
      scales: { x: { time: true } },
      axes: [axis, Object.assign({}, axis, { size: 60 })],
      series: [
        {},
        { label: "value", stroke: css("--value"), width: 2, spanGaps: false },
        { label: "threshold " + doc.operator + " " + doc.threshold,
          stroke: css("--threshold"), width: 2, dash: [6, 4] }
      ],
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
          var min = u.scales.x.min, max = u.scales.x.max;
          drawn = [];
          ctx.save();
          ctx.lineWidth = 2 * devicePixelRatio;
          marks.forEach(function (m) {
            if (m.time < min || m.time > max) { return; }
            var x = Math.round(u.valToPos(m.time, "x", true));
            ctx.strokeStyle = css(STATE_VAR[m.state] || "--muted");
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            drawn.push({ time: m.time, state: m.state, x: x });
          });
          ctx.restore();
          holder.dataset.marksDrawn = String(drawn.length);
          window.alarmerPlot = {
            times: u.data[0], values: u.data[1], threshold: u.data[2] || [], marks: drawn
          };
        }]
      }
    };
    // Transitions outside the data still show: widen the x range to them.
    if (marks.length && times.length) {
      var first = marks[0].time, last = marks[marks.length - 1].time;
      if (first < times[0]) {
        times = [first].concat(times);
        doc.values = [null].concat(doc.values);
        threshold = [doc.threshold].concat(threshold);
      }
      if (last > times[times.length - 1]) {
        times = times.concat([last]);
        doc.values = doc.values.concat([null]);
        threshold = threshold.concat([doc.threshold]);
      }
    }
    if (!times.length) {
      holder.dataset.marksDrawn = "0";
      window.alarmerPlot = { times: [], values: [], threshold: [], marks: [] };
      return;
    }
    if (doc.threshold === null) {  // a metric alone, no rule
      opts.series = opts.series.slice(0, 2);
      plot = new uPlot(opts, [times, doc.values], holder);
      return;
    }
    plot = new uPlot(opts, [times, doc.values, threshold], holder);
  }

  function resize() {
    var holder = document.getElementById("plot");
    if (plot && holder) { plot.setSize({ width: Math.max(holder.clientWidth, 280), height: 320 }); }
  }

  // -- buttons (member and admin only; the API decides) ----------------------
  function api(method, url, body) {
    var init = { method: method, headers: { "Accept": "application/json" } };
    var csrf = document.querySelector('meta[name="csrf-token"]');
    if (csrf) { init.headers["X-CSRF-Token"] = csrf.content; }
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (r) {
      return r.text().then(function (text) {
        if (!r.ok) {
          var message = text;
          try {
            var parsed = JSON.parse(text);
            message = (parsed.error_message && (parsed.error_message.faultstring || parsed.error_message)) ||
              parsed.description || text;
          } catch (e) { /* not JSON */ }
          throw new Error(r.status + " " + message);
        }
        return text ? JSON.parse(text) : null;
      });
    });
  }

  function result(text) {
    var out = document.getElementById("action-result");
    if (out) { out.textContent = text; }
    announce(text);
  }

  function wireButtons() {
    var section = document.querySelector(".actions[data-alarm-id]");
    if (section) {
      var id = section.dataset.alarmId;
      var base = "/v2/alarms/" + encodeURIComponent(id);
      var toggle = document.getElementById("toggle-enabled");
      toggle.addEventListener("click", function () {
        api("GET", base).then(function (doc) {
          doc.enabled = !doc.enabled;
          return api("PUT", base, doc);
        }).then(function (doc) {
          result(doc.enabled ? "Enabled" : "Disabled");
          refresh();
        }).catch(function (e) { result("Failed: " + e.message); });
      });
      document.getElementById("set-state").addEventListener("click", function () {
        var state = document.getElementById("new-state").value;
        api("PUT", base + "/state", state).then(function () {
          result("State set to " + state);
          refresh();
        }).catch(function (e) { result("Failed: " + e.message); });
      });
    }
    Array.prototype.forEach.call(document.querySelectorAll("button.redeliver"), function (b) {
      b.addEventListener("click", function () {
        var url = "/v2/alarms/" + encodeURIComponent(b.dataset.alarmId) +
          "/deliveries/" + encodeURIComponent(b.dataset.deliveryId) + "/redeliver";
        b.disabled = true;
        api("POST", url).then(function (doc) {
          var row = b.closest("tr");
          row.dataset.status = doc.status;
          row.querySelector(".dstatus").textContent = doc.status;
          b.remove();
          announce("Delivery queued again");
        }).catch(function (e) { b.disabled = false; announce("Failed: " + e.message); });
      });
    });
  }

  // -- live updates ----------------------------------------------------------
  var lastToken = null;

  function refresh() {
    return fetch(location.href, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("live");
        var live = document.getElementById("live");
        if (!fresh || !live) { return; }
        var focused = document.activeElement && document.activeElement.id;
        live.innerHTML = fresh.innerHTML;
        if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
        init();
        announce("Updated");
      });
  }

  function poll() {
    var main = document.getElementById("main");
    var url = main && main.dataset.tokenUrl;
    if (!url) { return; }
    var every = parseInt(main.dataset.pollMs, 10) || 2000;
    function tick() {
      if (document.hidden) { setTimeout(tick, every); return; }
      fetch(url, { headers: { "Accept": "application/json" }, cache: "no-store" })
        .then(function (r) {
          // Signed out (the key or token expired or was revoked): the
          // page, reloaded, says so and links to the sign-in form.
          if (r.status === 401) { location.reload(); return null; }
          return r.ok ? r.json() : null;
        })
        .then(function (doc) {
          if (doc && lastToken !== null && doc.token !== lastToken) {
            lastToken = doc.token;
            return refresh();
          }
          if (doc) { lastToken = doc.token; }
        })
        .catch(function () { /* try again at the next tick */ })
        .then(function () { setTimeout(tick, every); });
    }
    tick();
  }

  function init() {
    drawPlot();
    wireButtons();
  }

  applyTheme();
  document.addEventListener("DOMContentLoaded", function () {
    var theme = document.getElementById("theme");
    if (theme) { theme.addEventListener("click", toggleTheme); }
    window.addEventListener("resize", resize);
    init();
    poll();
  });
})();
