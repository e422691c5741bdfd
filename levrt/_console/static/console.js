// The console's one script: what a static page cannot do. Checks a run form before it is sent,
// keeps a running job's task rows live from the API's event stream (cells change in place: no
// reload, no layout shift), loads the results when the job ends, and streams a task's log.
"use strict";

function setError(field, message) {
  const input = field.querySelector("input, select, textarea");
  const error = field.querySelector(".error");
  field.classList.toggle("invalid", Boolean(message));
  if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
  if (error) error.textContent = message || "";
}

function checkField(field) {
  const input = field.querySelector("input, select, textarea");
  if (!input) return "";
  const value = input.value.trim();
  if (!value) return input.required ? "Required." : "";
  if (input.type === "number" && Number.isNaN(Number(value))) return "Not a number.";
  if (input.type === "number" && input.step === "1" && !Number.isInteger(Number(value))) return "Not a whole number.";
  const patterns = input.dataset.regex ? JSON.parse(input.dataset.regex) : [];
  if (patterns.length && !patterns.some((p) => { try { return new RegExp(p).test(value); } catch (e) { return true; } })) {
    return "Does not match " + patterns.join(" or ") + ".";
  }
  return "";
}

function watchForms() {
  for (const form of document.querySelectorAll("form.run")) {
    form.addEventListener("submit", (event) => {
      let first = null;
      for (const field of form.querySelectorAll(".field")) {
        const message = checkField(field);
        setError(field, message);
        if (message && !first) first = field.querySelector("input, select, textarea");
      }
      if (first) { event.preventDefault(); first.focus(); }
    });
  }
}

function seconds(value) {
  if (typeof value !== "number") return "-";
  const minutes = Math.floor(value / 60);
  const rest = value - minutes * 60;
  return minutes ? minutes + "m" + rest.toFixed(1).padStart(4, "0") + "s" : rest.toFixed(1) + "s";
}

function stateBadge(state) {
  const span = document.createElement("span");
  span.className = "state s-" + String(state).split("(")[0];
  span.textContent = state;
  return span;
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function taskRow(table, data) {
  const id = "task-" + data.task;
  let row = document.getElementById(id);
  if (!row) {
    row = document.createElement("tr");
    row.id = id;
    const task = String(data.task).split(".").pop();
    const logs = document.createElement("td");
    const link = document.createElement("a");
    link.href = "/jobs/" + table.dataset.job + "/tasks/" + task + "/logs";
    link.textContent = "logs";
    logs.append(link);
    row.append(cell(data.task), cell(data.name, "what"), cell("", "st"), cell("", "num el"), cell("", "num re"), logs);
    table.tBodies[0].append(row);
  }
  row.querySelector(".st").replaceChildren(stateBadge(data.state));
  row.querySelector(".el").textContent = seconds(data.elapsed);
  row.querySelector(".re").textContent = String(data.retries || 0);
}

function followJob() {
  const table = document.getElementById("tasks");
  if (!table || table.dataset.live !== "1" || !window.EventSource) return;
  const job = table.dataset.job;
  const live = document.getElementById("live");
  const events = new EventSource("/api/v1/jobs/" + job + "/events");
  live.textContent = "Live: updating as the job runs.";
  events.addEventListener("task", (event) => taskRow(table, JSON.parse(event.data)));
  events.addEventListener("job", (event) => {
    const data = JSON.parse(event.data);
    document.getElementById("duration").textContent = seconds(data.duration);
  });
  events.addEventListener("end", async (event) => {
    events.close();
    const data = JSON.parse(event.data);
    table.dataset.live = "0";
    const heading = document.querySelector("h1 .state");
    if (heading) heading.replaceWith(stateBadge(data.state));
    for (const form of document.querySelectorAll("form[action$='/cancel']")) form.remove();
    live.textContent = "The job " + data.state + ".";
    const answer = await fetch("/jobs/" + job + "/results", {credentials: "same-origin"});
    if (answer.ok) document.getElementById("results").innerHTML = await answer.text();
  });
  events.onerror = () => { live.textContent = "Connection lost; reload to catch up."; };
}

async function followLog() {
  const pre = document.getElementById("log");
  if (!pre) return;
  const answer = await fetch(pre.dataset.source, {credentials: "same-origin"});
  const source = document.getElementById("log-source");
  if (!answer.ok) {
    pre.textContent = "";
    source.textContent = (await answer.json().catch(() => ({detail: answer.statusText}))).detail;
    return;
  }
  const from = answer.headers.get("X-Levrt-Log-Source");
  const cut = answer.headers.get("X-Levrt-Log-Cut");
  source.textContent = from === "archive" ? "The Pod is gone: this is the log archived when the task ended." +
    (cut ? " Incomplete: " + cut + "." : "") : "From the running Pod, as it comes.";
  pre.textContent = "";
  const reader = answer.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    pre.append(decoder.decode(value, {stream: true}));
  }
}

function copyButtons() {
  if (!navigator.clipboard) return;
  for (const pre of document.querySelectorAll("pre.copy")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-button";
    button.textContent = "Copy";
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(pre.textContent);
      button.textContent = "Copied";
    });
    pre.after(button);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  watchForms();
  followJob();
  followLog();
  copyButtons();
});
