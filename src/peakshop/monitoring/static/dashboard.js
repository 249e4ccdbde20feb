/* peakshop live dashboard. Plain JavaScript, no build step; charts by the vendored uPlot.
 *
 * Data: JSON frames {type, at, data} from /ws/monitoring (metrics-update every second per
 * server process, order-update, inventory-update, system-alert), and at start (and after a
 * reconnection, to fill the gap) the history and recent alerts from the monitoring API.
 * The last 5 minutes are kept in this page only.
 *
 * Several server processes each send their own metrics-update: the page keeps the latest
 * snapshot of each and charts the sum (requests/s, in flight, buffers, memory), the worst
 * (latency percentiles, event-loop lag: percentiles of separate processes cannot be merged
 * exactly, the worst one is what an operator must see), or the request-weighted mean
 * (error rate, cache hit rate). Queue depth and dead letters are one shared queue: max.
 *
 * window.__peakshop exposes what is drawn (point counts, last values, alerts) for the
 * browser tests and for a curious operator's console.
 */
(function () {
  "use strict";

  var WINDOW_S = 300; // points kept: the last 5 minutes
  var STALE_S = 3; // a process silent this long no longer counts
  var SAME_TICK_S = 0.5; // snapshots of several processes this close make one point
  var STOCK_STEP_S = 0.25; // stock points at most 4 a second (inventory-update: <= 10/s/sale)
  var NO_DATA_S = 5; // connected but no metrics-update this long: say so
  var MAX_SALES_DRAWN = 8;
  var MAX_ALERTS = 100;
  var HEIGHT = 200;
  var MIB = 1024 * 1024;
  var TOKEN_KEY = "peakshop.dashboard.token";
  var SALE_COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#e67700", "#495057"];

  // --- formatting ------------------------------------------------------------------------

  function compact(v) {
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
    return v.toFixed(a >= 10 ? 1 : 2);
  }
  var fmt = {
    num: function (v) { return v == null ? "–" : compact(v); },
    ms: function (v) {
      if (v == null) return "–";
      return (v < 1 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : compact(Math.round(v))) + " ms";
    },
    pct: function (v) {
      if (v == null) return "–";
      var p = v * 100;
      return (p === 0 || p >= 10 ? p.toFixed(0) : p >= 1 ? p.toFixed(1) : p.toFixed(2)) + " %";
    },
    mb: function (v) {
      if (v == null) return "–";
      return (v >= 1024 ? (v / 1024).toFixed(2) + " GB" : v.toFixed(v >= 100 ? 0 : 1) + " MB");
    },
  };
  function clock(t) {
    var d = new Date(t * 1000);
    return d.toLocaleTimeString([], { hour12: false });
  }
  function seconds(at) {
    // ISO 8601; some parsers choke on more than 3 fractional digits.
    var t = Date.parse(String(at).replace(/(\.\d{3})\d+/, "$1"));
    return isNaN(t) ? Date.now() / 1000 : t / 1000;
  }
  function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }

  // --- drawing, at most once a frame ---------------------------------------------------------

  var dirty = new Set();
  var frame = 0;
  function schedule(chart) {
    dirty.add(chart);
    if (!frame && !document.hidden) frame = requestAnimationFrame(flush);
  }
  function flush() {
    frame = 0;
    dirty.forEach(function (chart) { chart.draw(); });
    dirty.clear();
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && dirty.size && !frame) frame = requestAnimationFrame(flush);
  });
  function widthOf(el) { return Math.max(280, el.clientWidth || 400); }

  function plotOptions(el, series, format, range) {
    return {
      width: widthOf(el),
      height: HEIGHT,
      cursor: { drag: { x: false, y: false } }, // no zoom: the window scrolls by itself
      scales: { x: { time: true }, y: { range: range } },
      axes: [
        { stroke: "#687086", grid: { stroke: "#eef0f4" } },
        {
          stroke: "#687086",
          grid: { stroke: "#eef0f4" },
          size: 64,
          values: function (u, splits) { return splits.map(format); },
        },
      ],
      series: [{}].concat(series.map(function (s) {
        return {
          label: s.label,
          stroke: s.stroke,
          width: 1.5,
          dash: s.dash,
          points: { show: false },
          value: function (u, v) { return format(v); },
        };
      })),
    };
  }
  function fromZero(u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; }
  function unitRange() { return [0, 1]; }

  // One chart with fixed series, a point per second.
  function LiveChart(id, series, format, range) {
    this.el = document.getElementById(id);
    this.series = series;
    this.format = format;
    this.range = range || fromZero;
    this.data = [[]].concat(series.map(function () { return []; }));
    this.plot = new uPlot(plotOptions(this.el, series, format, this.range), this.data, this.el);
  }
  LiveChart.prototype.push = function (t, values) {
    var x = this.data[0];
    var n = x.length;
    var i;
    if (n && t - x[n - 1] < SAME_TICK_S) {
      for (i = 0; i < values.length; i++) this.data[i + 1][n - 1] = values[i];
    } else {
      x.push(t);
      for (i = 0; i < values.length; i++) this.data[i + 1].push(values[i]);
    }
    trim(this.data, t);
    schedule(this);
  };
  LiveChart.prototype.lastTime = function () {
    var x = this.data[0];
    return x.length ? x[x.length - 1] : -Infinity;
  };
  LiveChart.prototype.draw = function () { this.plot.setData(this.data); };
  LiveChart.prototype.resize = function () {
    this.plot.setSize({ width: widthOf(this.el), height: HEIGHT });
  };

  function trim(columns, t) {
    var x = columns[0];
    var cutoff = t - WINDOW_S;
    var drop = 0;
    while (drop < x.length && x[drop] < cutoff) drop++;
    if (drop) columns.forEach(function (col) { col.splice(0, drop); });
  }

  // Stock of the flash sales: three series per sale (remaining, reserved, sold), the set of
  // sales changing over time. uPlot's series are fixed per instance, so a new set rebuilds it.
  function StockChart(id, tableId) {
    this.el = document.getElementById(id);
    this.table = document.getElementById(tableId);
    this.x = [];
    this.columns = new Map(); // sale_id -> [remaining[], reserved[], sold[]]
    this.current = new Map(); // sale_id -> {remaining, reserved, sold, seen}
    this.drawn = [];
    this.plot = null;
    this.build();
  }
  StockChart.prototype.build = function () {
    if (this.plot) this.plot.destroy();
    var series = [];
    this.drawn.forEach(function (id, i) {
      var color = SALE_COLORS[i % SALE_COLORS.length];
      series.push({ label: "#" + id + " remaining", stroke: color });
      series.push({ label: "#" + id + " reserved", stroke: color, dash: [6, 4] });
      series.push({ label: "#" + id + " sold", stroke: color, dash: [2, 3] });
    });
    this.plot = new uPlot(plotOptions(this.el, series, fmt.num, fromZero), this.uplotData(), this.el);
  };
  StockChart.prototype.uplotData = function () {
    var data = [this.x];
    var columns = this.columns;
    this.drawn.forEach(function (id) { data.push.apply(data, columns.get(id)); });
    return data;
  };
  StockChart.prototype.set = function (t, sale) {
    var id = sale.sale_id;
    if (typeof id !== "number") return;
    this.current.set(id, {
      remaining: num(sale.remaining), reserved: num(sale.reserved), sold: num(sale.sold), seen: t,
    });
  };
  StockChart.prototype.sample = function (t) {
    var x = this.x;
    var columns = this.columns;
    var self = this;
    this.current.forEach(function (s, id) { if (t - s.seen > STALE_S) self.current.delete(id); });
    this.current.forEach(function (s, id) {
      if (!columns.has(id)) {
        columns.set(id, [0, 1, 2].map(function () { return x.map(function () { return null; }); }));
      }
    });
    var n = x.length;
    var replace = n && t - x[n - 1] < STOCK_STEP_S;
    if (!replace) x.push(t);
    var last = x.length - 1;
    columns.forEach(function (cols, id) {
      var s = self.current.get(id);
      var values = s ? [s.remaining, s.reserved, s.sold] : [null, null, null];
      for (var i = 0; i < 3; i++) {
        if (replace) cols[i][last] = values[i];
        else cols[i].push(values[i]);
      }
    });
    var all = [x];
    columns.forEach(function (cols) { all.push.apply(all, cols); });
    trim(all, t);
    // A sale with no point left in the window is gone.
    columns.forEach(function (cols, id) {
      if (!cols[0].some(function (v) { return v != null; })) columns.delete(id);
    });
    var drawn = Array.from(columns.keys()).sort(function (a, b) { return b - a; })
      .slice(0, MAX_SALES_DRAWN).sort(function (a, b) { return a - b; });
    if (drawn.join() !== this.drawn.join()) {
      this.drawn = drawn;
      this.build();
    }
    this.renderTable();
    schedule(this);
  };
  StockChart.prototype.draw = function () { this.plot.setData(this.uplotData()); };
  StockChart.prototype.resize = function () {
    this.plot.setSize({ width: widthOf(this.el), height: HEIGHT });
  };
  StockChart.prototype.renderTable = function () {
    var ids = Array.from(this.current.keys()).sort(function (a, b) { return a - b; });
    this.table.hidden = ids.length === 0;
    var body = this.table.tBodies[0];
    var current = this.current;
    body.replaceChildren.apply(body, ids.map(function (id) {
      var s = current.get(id);
      var row = document.createElement("tr");
      row.dataset.sale = String(id);
      ["#" + id, fmt.num(s.remaining), fmt.num(s.reserved), fmt.num(s.sold)].forEach(function (text) {
        var cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      });
      return row;
    }));
  };

  // --- the page's state ----------------------------------------------------------------------

  var charts = {};
  var processes = new Map(); // pid -> {t, data}
  var alerts = []; // newest first
  var alertKeys = new Set();
  var orders = []; // [t, status]
  var counts = { "metrics-update": 0, "order-update": 0, "inventory-update": 0, "system-alert": 0 };
  var lastMetricsAt = 0; // page clock, for the "no data" state
  var status = "idle";

  function setStatus(state, text) {
    status = state;
    var el = document.getElementById("status");
    el.dataset.state = state;
    el.textContent = text;
  }
  function tile(id, text, firing) {
    var el = document.getElementById(id);
    el.textContent = text;
    el.classList.toggle("firing", !!firing);
  }

  function aggregate(t) {
    var live = [];
    processes.forEach(function (p, pid) {
      if (t - p.t > STALE_S) processes.delete(pid);
      else live.push(p.data);
    });
    var a = {
      rps: 0, errors: 0, p50: null, p95: null, p99: null, depth: 0, inFlight: 0, dead: 0,
      vlog: 0, rss: 0, lag: null, alerts: 0, hits: null, processes: live.length,
    };
    var errorWeighted = 0;
    var errorMax = 0;
    var hitSum = 0;
    var hitWeight = 0;
    function worst(current, v) { v = num(v); return v == null ? current : current == null ? v : Math.max(current, v); }
    live.forEach(function (d) {
      var rps = num(d.requests_per_second) || 0;
      var err = num(d.error_rate) || 0;
      var latency = d.latency_ms || {};
      var queue = d.queue || {};
      a.rps += rps;
      errorWeighted += err * rps;
      errorMax = Math.max(errorMax, err);
      a.p50 = worst(a.p50, latency.p50);
      a.p95 = worst(a.p95, latency.p95);
      a.p99 = worst(a.p99, latency.p99);
      a.lag = worst(a.lag, d.event_loop_lag_ms);
      a.depth = Math.max(a.depth, num(queue.depth) || 0);
      a.dead = Math.max(a.dead, num(queue.dead_letters) || 0);
      a.inFlight += num(queue.in_flight) || 0;
      a.vlog += num(d.validation_log_queue) || 0;
      a.rss += num(d.rss_bytes) || 0;
      a.alerts = Math.max(a.alerts, num(d.alerts_active) || 0);
      var hit = num(d.cache_hit_rate);
      if (hit != null) {
        var w = Math.max(rps, 1e-9);
        hitSum += hit * w;
        hitWeight += w;
      }
    });
    a.errors = a.rps > 0 ? errorWeighted / a.rps : errorMax;
    a.hits = hitWeight > 0 ? hitSum / hitWeight : null;
    return a;
  }

  function onMetrics(t, d) {
    if (!d || typeof d !== "object") return;
    var pid = d.pid != null ? d.pid : "?";
    processes.set(pid, { t: t, data: d });
    var a = aggregate(t);
    charts.rps.push(t, [a.rps]);
    charts.latency.push(t, [a.p50, a.p95, a.p99]);
    charts.errors.push(t, [a.errors]);
    charts.queue.push(t, [a.depth, a.inFlight, a.dead]);
    charts.vlog.push(t, [a.vlog]);
    charts.cache.push(t, [a.hits]);
    charts.rss.push(t, [a.rss / MIB]);
    (Array.isArray(d.sales) ? d.sales : []).forEach(function (s) { charts.stock.set(t, s); });
    charts.stock.sample(t);
    tile("tile-rps", fmt.num(a.rps));
    tile("tile-p99", fmt.ms(a.p99));
    tile("tile-errors", fmt.pct(a.errors), a.errors > 0);
    tile("tile-lag", fmt.ms(a.lag));
    tile("tile-processes", String(a.processes));
    tile("tile-alerts", String(a.alerts), a.alerts > 0);
    lastMetricsAt = Date.now();
    if (status === "stale") setStatus("live", "live");
  }

  function onInventory(t, d) {
    if (!d) return;
    charts.stock.set(t, d);
    charts.stock.sample(t);
  }

  function onOrder(t, d) {
    if (!d) return;
    orders.push([t, String(d.status)]);
    while (orders.length && orders[0][0] < t - WINDOW_S) orders.shift();
    var confirmed = 0;
    var failed = 0;
    orders.forEach(function (o) {
      if (o[1] === "confirmed") confirmed++;
      else if (o[1] === "failed") failed++;
    });
    tile("tile-orders", compact(confirmed) + (failed ? " / " + compact(failed) + " failed" : ""), failed > 0);
  }

  function onAlert(t, d) {
    if (!d || !d.name) return;
    var key = [d.name, d.state, Math.round(t)].join("|");
    if (alertKeys.has(key)) return;
    alertKeys.add(key);
    var alert = {
      at: t, name: String(d.name), severity: String(d.severity || "warning"),
      state: String(d.state || "firing"), message: String(d.message || ""),
      value: num(d.value), threshold: num(d.threshold),
    };
    // Newest first, also when the history arrives after live ones.
    var index = 0;
    while (index < alerts.length && alerts[index].at > t) index++;
    alerts.splice(index, 0, alert);
    if (alerts.length > MAX_ALERTS) alerts.length = MAX_ALERTS;
    renderAlerts();
    // Until the next metrics-update brings the server's count: the alerts whose latest
    // event here is a firing one.
    var latest = new Map();
    alerts.forEach(function (a) { if (!latest.has(a.name)) latest.set(a.name, a.state); });
    var firing = 0;
    latest.forEach(function (state) { if (state === "firing") firing++; });
    tile("tile-alerts", String(firing), firing > 0);
  }

  function renderAlerts() {
    var list = document.getElementById("alert-list");
    document.getElementById("alerts-empty").hidden = alerts.length > 0;
    list.replaceChildren.apply(list, alerts.map(function (a) {
      var li = document.createElement("li");
      li.dataset.name = a.name;
      li.dataset.state = a.state;
      li.dataset.severity = a.severity;
      var value = a.value == null ? "" : "value " + compact(a.value) +
        (a.threshold == null ? "" : " (threshold " + compact(a.threshold) + ")");
      [["time", clock(a.at)], ["severity", a.severity], ["state", a.state],
        ["message", a.name + ": " + a.message], ["value", value]].forEach(function (part) {
        var span = document.createElement("span");
        span.className = part[0];
        span.textContent = part[1];
        li.appendChild(span);
      });
      return li;
    }));
  }

  function handle(message) {
    if (!message || typeof message.type !== "string") return;
    var t = seconds(message.at);
    if (message.type in counts) counts[message.type]++;
    if (message.type === "metrics-update") onMetrics(t, message.data);
    else if (message.type === "inventory-update") onInventory(t, message.data);
    else if (message.type === "order-update") onOrder(t, message.data);
    else if (message.type === "system-alert") onAlert(t, message.data);
  }

  // --- token, history, live connection -----------------------------------------------------------

  var token = null;
  var socket = null;
  var backoff = 1000;
  var retryTimer = 0;

  function storage(action, value) {
    try {
      if (action === "get") return sessionStorage.getItem(TOKEN_KEY);
      if (action === "set") sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      // storage disabled: the token lives in this page only
    }
    return null;
  }

  function askForToken(message) {
    token = null;
    storage("remove");
    setStatus(message ? "error" : "idle", message ? "not connected" : "no token");
    document.getElementById("token-form").hidden = false;
    document.getElementById("forget-token").hidden = true;
    document.getElementById("token-error").textContent = message || "";
    document.getElementById("token-input").focus();
  }

  function api(path) {
    return fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  }

  function items(body) {
    if (Array.isArray(body)) return body;
    if (body && typeof body === "object") {
      for (var key of ["items", "snapshots", "alerts", "history", "data"]) {
        if (Array.isArray(body[key])) return body[key];
      }
    }
    return [];
  }

  function loadHistory(list) {
    // Snapshots carry their time as `at` (or come wrapped as {at, data}); failing that they
    // are one second apart, ending now.
    var after = charts.rps.lastTime();
    var now = Date.now() / 1000;
    list.forEach(function (item, i) {
      if (!item || typeof item !== "object") return;
      var data = item.data && typeof item.data === "object" && !Array.isArray(item.data) ? item.data : item;
      var at = item.at || data.at;
      var t = at ? seconds(at) : now - (list.length - 1 - i);
      if (t > after) onMetrics(t, data);
    });
  }

  function loadAlerts(list) {
    list.forEach(function (item) {
      if (!item || typeof item !== "object") return;
      if (item.type === "system-alert" || (item.data && item.data.name)) onAlert(seconds(item.at), item.data);
      else onAlert(seconds(item.at || item.fired_at || item.since), item);
    });
  }

  async function begin() {
    clearTimeout(retryTimer);
    setStatus("connecting", "connecting…");
    var response;
    try {
      response = await api("/api/v1/monitoring/alerts");
    } catch (e) {
      retry("server unreachable");
      return;
    }
    if (response.status === 401 || response.status === 403) {
      askForToken("the server refused this token");
      return;
    }
    document.getElementById("token-form").hidden = true;
    document.getElementById("forget-token").hidden = false;
    try {
      if (response.ok) loadAlerts(items(await response.json()));
      var history = await api("/api/v1/monitoring/history?minutes=" + WINDOW_S / 60);
      if (history.ok) loadHistory(items(await history.json()));
    } catch (e) {
      // no history: the charts start with the live data
    }
    connect();
  }

  function retry(text) {
    setStatus("error", text + "; retrying in " + Math.round(backoff / 1000) + " s");
    clearTimeout(retryTimer);
    retryTimer = setTimeout(begin, backoff);
    backoff = Math.min(backoff * 2, 15000);
  }

  function connect() {
    if (!token) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/ws/monitoring?token=" + encodeURIComponent(token));
    socket = ws;
    ws.onopen = function () {
      backoff = 1000;
      lastMetricsAt = Date.now();
      setStatus("live", "live");
    };
    ws.onmessage = function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      handle(message);
    };
    ws.onclose = function (event) {
      if (socket !== ws) return; // replaced on purpose
      socket = null;
      // 4401/4403 (and the generic policy violation) mean the token was refused.
      if (event.code === 4401 || event.code === 4403 || event.code === 1008) {
        askForToken("the server refused this token");
        return;
      }
      if (token) retry("disconnected");
    };
  }

  function disconnect() {
    clearTimeout(retryTimer);
    if (socket) {
      var ws = socket;
      socket = null;
      ws.close();
    }
  }

  function useToken(value) {
    disconnect();
    token = value;
    storage("set", value);
    backoff = 1000;
    begin();
  }

  // --- start ---------------------------------------------------------------------------------

  function start() {
    charts.rps = new LiveChart("chart-rps", [{ label: "requests/s", stroke: "#2f6fde" }], fmt.num);
    charts.latency = new LiveChart("chart-latency", [
      { label: "P50", stroke: "#2b8a3e" },
      { label: "P95", stroke: "#e67700" },
      { label: "P99", stroke: "#c62828" },
    ], fmt.ms);
    charts.errors = new LiveChart("chart-errors", [{ label: "error rate", stroke: "#c62828" }], fmt.pct,
      function (u, min, max) { return [0, max > 0 ? Math.min(1, max * 1.15) : 0.01]; });
    charts.stock = new StockChart("chart-stock", "sales-table");
    charts.queue = new LiveChart("chart-queue", [
      { label: "depth", stroke: "#2f6fde" },
      { label: "in flight", stroke: "#2b8a3e" },
      { label: "dead letters", stroke: "#c62828" },
    ], fmt.num);
    charts.vlog = new LiveChart("chart-vlog", [{ label: "records", stroke: "#862e9c" }], fmt.num);
    charts.cache = new LiveChart("chart-cache", [{ label: "hit rate", stroke: "#0b7285" }], fmt.pct, unitRange);
    charts.rss = new LiveChart("chart-rss", [{ label: "RSS", stroke: "#495057" }], fmt.mb);

    var resizeTimer = 0;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        Object.keys(charts).forEach(function (k) { charts[k].resize(); });
      }, 150);
    });
    setInterval(function () {
      if (status === "live" && Date.now() - lastMetricsAt > NO_DATA_S * 1000) {
        setStatus("stale", "connected, no data for " + NO_DATA_S + " s");
      }
    }, 1000);

    document.getElementById("token-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var value = document.getElementById("token-input").value.trim();
      if (value) useToken(value);
    });
    document.getElementById("forget-token").addEventListener("click", function () {
      disconnect();
      askForToken("");
    });

    // ?token= in the address: keep it for this tab only and take it out of the address bar
    // (and so out of the history and of screenshots).
    var params = new URLSearchParams(location.search);
    var fromUrl = params.get("token");
    if (fromUrl) {
      params.delete("token");
      var rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    }
    var initial = fromUrl || storage("get");
    if (initial) useToken(initial);
    else askForToken("");
  }

  function lastValues(data) {
    var n = data[0].length;
    return data.slice(1).map(function (col) { return n ? col[n - 1] : null; });
  }

  window.__peakshop = {
    status: function () { return status; },
    messages: counts,
    chart: function (name) {
      var chart = charts[name];
      if (!chart) return null;
      var data = chart.plot.data;
      return {
        points: data[0].length,
        series: chart.plot.series.slice(1).map(function (s) { return s.label; }),
        last: lastValues(data),
      };
    },
    alerts: function () { return alerts.slice(); },
    sales: function () { return Array.from(charts.stock.current.keys()); },
  };

  start();
})();
