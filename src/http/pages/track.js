// The tracking page: one order's timeline of statuses, growing live (order feed).
"use strict";

const orderId = decodeURIComponent(location.pathname.split("/").pop());
const seen = new Set(); // versions on the timeline

function addStep(version, status, at) {
  if (seen.has(version)) return;
  seen.add(version);
  const item = document.createElement("li");
  item.dataset.status = status;
  const when = at ? new Date(at).toLocaleString() : "";
  item.innerHTML = '<span class="status"></span> <span class="muted"></span>';
  item.children[0].textContent = statusName(status);
  item.children[1].textContent = when;
  document.getElementById("timeline").append(item);
}

function showStatus(status) {
  const element = document.getElementById("status");
  element.dataset.status = status;
  element.textContent = statusName(status);
}

withToken(async (token) => {
  document.getElementById("order").textContent = "#" + shortId(orderId);
  const feed = document.getElementById("feed");
  try {
    const order = await api(token, "GET", "/v1/orders/" + encodeURIComponent(orderId));
    showStatus(order.status);
    document.getElementById("summary").textContent =
      (order.item_count || 0) + " item(s) · " + money(order.total_minor, order.currency);
    const history = await api(token, "GET",
      "/v1/orders/" + encodeURIComponent(orderId) + "/status-history");
    for (const step of itemsOf(history)) {
      addStep(step.version, step.status, step.recorded_at);
    }
  } catch (e) {
    announce(e.message, true);
    return;
  }
  follow("/v1/orders/" + encodeURIComponent(orderId) + "/live", token,
    (kind, data) => {
      if (kind === "snapshot") {
        showStatus(data.status);
      } else if (data.status && data.status !== data.previous_status) {
        showStatus(data.status);
        addStep(data.version, data.status, data.recorded_at);
        announce("Your order is now " + statusName(data.status));
      }
    },
    (state) => {
      feed.dataset.state = state;
      feed.textContent = state === "open" ? "live" : "reconnecting…";
    });
  document.body.dataset.loaded = "true";
});
