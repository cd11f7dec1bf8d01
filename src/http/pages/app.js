// Shared by the pages: the token (entered once, or passed as #token=..., kept in
// sessionStorage, never in the page URL), API calls, status names and announcements.
"use strict";

const TOKEN_KEY = "order-service-token";

const STATUS_NAMES = {
  draft: "Draft", placed: "Placed", confirmed: "Confirmed", rejected: "Rejected",
  preparing: "Preparing", ready_for_pickup: "Ready for pickup", picked_up: "Picked up",
  shipped: "Shipped", delivered: "Delivered", cancelled: "Cancelled", discarded: "Discarded",
};

function statusName(status) {
  return STATUS_NAMES[status] || status;
}

// The token from the URL fragment (then dropped from the address bar) or the session.
function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const passed = fragment.get("token");
  if (passed) {
    sessionStorage.setItem(TOKEN_KEY, passed);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

// Asks for a token, then calls `start` with it.
function withToken(start) {
  const token = takeToken();
  if (token) {
    start(token);
    return;
  }
  const main = document.querySelector("main");
  main.innerHTML = "";
  const form = document.createElement("form");
  form.className = "login";
  form.innerHTML =
    '<label for="token">Access token (kept for this tab only)</label>' +
    '<input id="token" name="token" type="password" autocomplete="off" required>' +
    '<button type="submit">Open</button>';
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, form.token.value.trim());
    location.reload();
  });
  main.append(form);
  form.token.focus();
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// Calls the API with the token; resolves to the JSON body, rejects with the problem's detail.
async function api(token, method, path, body) {
  const response = await fetch(path, {
    method,
    headers: Object.assign(
      { Authorization: "Bearer " + token, Accept: "application/json" },
      body === undefined ? {} : { "Content-Type": "application/json" },
    ),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    forgetToken();
  }
  if (!response.ok) {
    throw new Error((json && (json.detail || json.title)) || response.statusText);
  }
  return json;
}

// A list answer as an array, whether it came as a page ({items}) or bare.
function itemsOf(answer) {
  return Array.isArray(answer) ? answer : (answer && answer.items) || [];
}

// Says `message` to screen readers (the page's aria-live region) and shows it.
function announce(message, isError) {
  const region = document.getElementById("announcements");
  region.textContent = message;
  region.className = isError ? "error" : "muted";
}

function shortId(id) {
  return id.slice(0, 8);
}

function money(minor, currency) {
  if (typeof minor !== "number") return "";
  return (minor / 100).toFixed(2) + " " + (currency || "");
}

// Follows a live feed; `onMessage(kind, data)`; reconnects with the last id (EventSource does).
function follow(path, token, onMessage, onState) {
  const source = new EventSource(path + "?access_token=" + encodeURIComponent(token));
  source.addEventListener("open", () => onState("open"));
  source.addEventListener("error", () => onState("reconnecting"));
  for (const kind of ["snapshot", "event"]) {
    source.addEventListener(kind, (e) => onMessage(kind, JSON.parse(e.data)));
  }
  return source;
}
