// The store board: the store's open orders in columns by status, moving live (store feed),
// with a button on each card for the next step (the REST API, with the staff's token).
"use strict";

const storeId = decodeURIComponent(location.pathname.split("/").pop());
const COLUMNS = ["placed", "confirmed", "preparing", "ready_for_pickup"];
const NEXT = {
  confirmed: ["preparing", "Start preparing"],
  preparing: ["ready_for_pickup", "Ready for pickup"],
  ready_for_pickup: ["picked_up", "Picked up"],
};
const orders = new Map(); // id -> summary (with its status)

function render(token) {
  const columns = document.getElementById("columns");
  columns.innerHTML = "";
  for (const status of COLUMNS) {
    const section = document.createElement("section");
    section.className = "column";
    section.dataset.status = status;
    section.setAttribute("aria-labelledby", "col-" + status);
    const inColumn = [...orders.values()].filter((o) => o.status === status);
    section.innerHTML = '<h2 id="col-' + status + '">' + statusName(status) +
      ' <span class="muted">(' + inColumn.length + ")</span></h2>";
    for (const order of inColumn) {
      section.append(card(token, order));
    }
    columns.append(section);
  }
}

function card(token, order) {
  const article = document.createElement("article");
  article.className = "card";
  article.dataset.order = order.id;
  article.dataset.status = order.status;
  const title = document.createElement("h3");
  title.textContent = "#" + shortId(order.id);
  const details = document.createElement("div");
  details.className = "muted";
  details.textContent = [
    order.item_count !== undefined ? order.item_count + " item(s)" : "",
    money(order.total_minor, order.currency),
  ].filter(Boolean).join(" · ");
  article.append(title, details);
  const next = NEXT[order.status];
  if (next) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = next[1];
    button.setAttribute("aria-label", next[1] + ": order " + shortId(order.id));
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(token, "POST", "/v1/orders/" + order.id + "/status", { status: next[0] });
      } catch (e) {
        announce("Order " + shortId(order.id) + ": " + e.message, true);
        button.disabled = false;
      }
    });
    article.append(button);
  }
  return article;
}

async function load(token) {
  for (const status of COLUMNS) {
    const page = await api(token, "GET",
      "/v1/orders?store_id=" + encodeURIComponent(storeId) + "&status=" + status + "&limit=200");
    for (const order of itemsOf(page)) {
      orders.set(order.id, order);
    }
  }
  render(token);
}

async function onEvent(token, data) {
  const known = orders.get(data.order_id);
  if (!COLUMNS.includes(data.status)) {
    if (known) {
      orders.delete(data.order_id);
      announce("Order " + shortId(data.order_id) + " is " + statusName(data.status));
      render(token);
    }
    return;
  }
  if (known && known.status === data.status) {
    return;
  }
  let order = known;
  if (!order) {
    try {
      order = await api(token, "GET", "/v1/orders/" + data.order_id);
    } catch (e) {
      order = { id: data.order_id };
    }
  }
  order.status = data.status;
  orders.set(order.id, order);
  announce("Order " + shortId(order.id) + " is now " + statusName(data.status));
  render(token);
}

withToken(async (token) => {
  document.getElementById("store").textContent = "store " + storeId;
  const feed = document.getElementById("feed");
  try {
    const store = await api(token, "GET", "/v1/stores/" + encodeURIComponent(storeId));
    if (store && store.name) {
      document.getElementById("store").textContent = store.name;
      document.title = store.name + " · board";
    }
  } catch (e) {
    announce(e.message, true);
  }
  // the feed first, so nothing placed while the lists load is missed
  follow("/v1/stores/" + encodeURIComponent(storeId) + "/live", token,
    (kind, data) => { if (kind === "event") onEvent(token, data); },
    (state) => {
      feed.dataset.state = state;
      feed.textContent = state === "open" ? "live" : "reconnecting…";
    });
  try {
    await load(token);
    document.body.dataset.loaded = "true";
  } catch (e) {
    announce(e.message, true);
  }
});
