// rlreg's pages work without this file; it adds a copy button, auto-submitting selects and the
// live event feed (server-sent events). Text is only ever inserted with textContent.
"use strict";

function copyButtons() {
  for (const button of document.querySelectorAll(".copy-button")) {
    const source = document.getElementById(button.dataset.copy);
    if (!source) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      source.select();
      try {
        await navigator.clipboard.writeText(source.value);
        button.textContent = "Copied";
      } catch (err) {
        button.textContent = "Press Ctrl+C";
      }
    });
  }
}

function autoSubmit() {
  for (const select of document.querySelectorAll("select.autosubmit")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

function formatTime(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toISOString().slice(0, 19).replace("T", " ");
}

function actorText(actor) {
  if (!actor) return "";
  if (typeof actor === "string") return actor;
  if (actor.actor || actor.name) return String(actor.actor || actor.name);
  if (actor.user && actor.host) return actor.user + "@" + actor.host;
  return JSON.stringify(actor);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function eventRow(e) {
  const tr = document.createElement("tr");
  tr.dataset.position = e.position;
  tr.className = "fresh";
  tr.append(cell(String(e.position), "num"));
  const model = document.createElement("td");
  const link = document.createElement("a");
  link.href = "/models/" + e.stream;
  link.textContent = e.stream;
  model.append(link);
  tr.append(model, cell(String(e.stream_version), "num"), cell(e.type), cell(formatTime(e.timestamp)),
            cell(actorText(e.actor)), cell(e.summary || ""));
  return tr;
}

const RETRY_FIRST = window.rlregRetryMs || 5000;  // ms before a closed feed is started again (then doubled)
const RETRY_MOST = 60000;                           // and never longer than this
let retryDelay = 0;

function liveFeed() {
  const status = document.getElementById("live-status");
  const body = document.getElementById("events-body");
  if (!status || !body || status.dataset.paused || !window.EventSource) return;
  const query = new URLSearchParams({after: status.dataset.after});
  if (status.dataset.model) query.set("model", status.dataset.model);
  for (const t of (status.dataset.types || "").split(",")) if (t) query.append("type", t);
  const url = "/api/v1/events/live?" + query.toString();
  const source = new EventSource(url);
  status.textContent = "connecting…";
  source.addEventListener("open", () => { retryDelay = 0; status.textContent = "live"; status.classList.add("on"); });
  source.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    status.classList.remove("on");
    if (source.readyState === EventSource.CLOSED) whyClosed(status, url);  // (else the browser retries by itself)
  });
  source.addEventListener("rlreg", (message) => {
    const event = JSON.parse(message.data);
    status.dataset.after = String(Math.max(Number(status.dataset.after) || 0, event.position));
    if (body.querySelector('tr[data-position="' + event.position + '"]')) return;
    body.prepend(eventRow(event));
    const empty = document.getElementById("no-events");
    if (empty) empty.remove();
  });
}

// An answer other than 200 ends an EventSource for good, without saying which. Ask again: an answer
// that will not change (4xx: a position past the log's end, as after a restore from an older backup)
// stops the feed and says why; anything else (503 while the database is down, a lost network) starts
// a new feed after the last event shown, waiting twice as long each time, up to a minute.
function whyClosed(status, url) {
  const probe = new AbortController();
  fetch(url, {signal: probe.signal, headers: {Accept: "application/json"}}).then((r) => {
    if (r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429) {
      return r.json().then((b) => (b && b.error && b.error.message) || r.statusText, () => r.statusText)
        .then((why) => stopFeed(status, r.status + ": " + why));
    }
    probe.abort();  // (a 200 is a live stream: not this one's to read)
    retryLater(status);
  }, () => retryLater(status));
}

function retryLater(status) {
  retryDelay = Math.min(RETRY_MOST, retryDelay ? retryDelay * 2 : RETRY_FIRST);
  status.textContent = "offline: trying again in " + Math.round(retryDelay / 1000) + " s";
  setTimeout(liveFeed, retryDelay);
}

function stopFeed(status, why) {
  status.dataset.paused = "1";
  status.textContent = "stopped (" + why + "): reload the page";
}

document.addEventListener("DOMContentLoaded", () => {
  copyButtons();
  autoSubmit();
  liveFeed();
});
