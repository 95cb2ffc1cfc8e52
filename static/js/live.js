// The live dashboards' client half (server half: dashboards/live.py).
//
// The page's socket (#live-socket, htmx's websocket extension) swaps in what the server sends:
// new rows out of band, and #live-cursor, which carries the order numbers the page holds and
// the kinds of change that just happened. This script:
//  * refreshes every element that declares data-live-refresh="<kind> ..." when one of its
//    kinds changed, by triggering "live-refresh" on it (the element's own hx-get does the
//    rest, through the ordinary view and its permission checks), at most once per
//    data-live-throttle-ms (default 1000) per element;
//  * reconnects with the cursor: every socket the extension opens after the first one carries
//    after=/events_after= from #live-cursor and resumed=1, so the server sends what the page
//    missed while it was away (the channel layer may drop messages; the database does not);
//  * keeps #decision-rows in order, each row once, at most data-live-max-rows long;
//  * shows the socket's state in #live-status.
(function () {
  "use strict";

  var opened = 0;
  var lastRefresh = new WeakMap();
  var pendingRefresh = new WeakMap();

  function cursor() {
    return document.getElementById("live-cursor");
  }

  function withCursor(url) {
    var holder = cursor();
    if (opened === 0 || !holder) {
      return url;
    }
    var parsed = new URL(url, window.location.href);
    var decisions = holder.getAttribute("data-decisions");
    var events = holder.getAttribute("data-events");
    if (decisions) { parsed.searchParams.set("after", decisions); }
    if (events) { parsed.searchParams.set("events_after", events); }
    parsed.searchParams.set("resumed", "1");
    return parsed.toString();
  }

  var createSocket = htmx.createWebSocket;
  htmx.createWebSocket = function (url) {
    var socket = createSocket ? createSocket(withCursor(url)) : new WebSocket(withCursor(url), []);
    if (!createSocket) { socket.binaryType = htmx.config.wsBinaryType; }
    return socket;
  };

  function refresh(element) {
    var throttle = parseInt(element.getAttribute("data-live-throttle-ms") || "1000", 10);
    var now = Date.now();
    var last = lastRefresh.get(element) || 0;
    if (now - last >= throttle) {
      lastRefresh.set(element, now);
      htmx.trigger(element, "live-refresh");
      return;
    }
    if (!pendingRefresh.get(element)) {
      pendingRefresh.set(element, true);
      window.setTimeout(function () {
        pendingRefresh.delete(element);
        // The refresh before this one may have swapped the element out (hx-swap="outerHTML"):
        // then its successor, found by id, still owes the page this refresh; dropping it left the
        // counts as they were before the last change (its swap was read before that commit).
        var current = document.body.contains(element) ? element : (element.id && document.getElementById(element.id));
        if (current) { refresh(current); }
      }, throttle - (now - last));
    }
  }

  function changed(kinds) {
    kinds.forEach(function (kind) {
      document.querySelectorAll('[data-live-refresh~="' + kind + '"]').forEach(refresh);
    });
  }

  function status(text, state) {
    var element = document.getElementById("live-status");
    if (element) {
      element.textContent = text;
      element.setAttribute("data-state", state);
    }
  }

  document.addEventListener("htmx:wsOpen", function () {
    opened += 1;
    status("Live", "open");
  });
  document.addEventListener("htmx:wsClose", function () {
    status("Reconnecting…", "closed");
  });
  // Rows arrive newest first per message, but with several web processes a late batch can hold
  // older rows than the one before it, and a reconnect may resend rows the page has: keep the
  // list in order (newest first), each row once, and no longer than data-live-max-rows (500).
  function tidyRows() {
    var body = document.getElementById("decision-rows");
    if (!body) { return; }
    var seen = {};
    var rows = Array.prototype.filter.call(body.children, function (row) {
      if (!row.id || seen[row.id]) {
        if (row.id) { row.remove(); }
        return false;
      }
      seen[row.id] = true;
      return true;
    });
    var sequence = function (row) { return parseInt(row.getAttribute("data-sequence") || "0", 10); };
    var ordered = rows.slice().sort(function (a, b) { return sequence(b) - sequence(a); });
    var max = parseInt(body.getAttribute("data-live-max-rows") || "500", 10);
    ordered.forEach(function (row, index) {
      if (index >= max) { row.remove(); return; }
      if (body.children[index] !== row) { body.insertBefore(row, body.children[index] || null); }
    });
  }

  document.addEventListener("htmx:wsAfterMessage", function (event) {
    if (String(event.detail && event.detail.message).indexOf("#decision-rows") !== -1) { tidyRows(); }
    var holder = cursor();
    if (!holder) { return; }
    var kinds = (holder.getAttribute("data-changed") || "").split(" ").filter(Boolean);
    if (kinds.length) { changed(kinds); }
    document.dispatchEvent(new CustomEvent("veto:live", { detail: { kinds: kinds } }));
  });
})();
