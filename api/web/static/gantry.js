// Gantry's portal: a little progressive enhancement. Every page works without it.
"use strict";

function followLog(log) {
  // Poll the run's log for lines after the last one shown, until the run ends.
  let after = Number(log.dataset.after || 0);
  const status = document.getElementById("run-status");
  async function poll() {
    let body;
    try {
      const response = await fetch(`/runs/${encodeURIComponent(log.dataset.run)}/log?after=${after}`, {
        headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      if (!response.ok) {
        // Gone or forbidden: nothing more to show. Busy or down: try again a little later.
        if (response.status === 429 || response.status >= 500) setTimeout(poll, 5000);
        return;
      }
      body = await response.json();
    } catch (error) {
      setTimeout(poll, 5000);
      return;
    }
    for (const line of body.lines) {
      const span = document.createElement("span");
      span.className = `line level-${String(line.level).toLowerCase()}`;
      span.textContent = `${line.at} ${line.level} ${line.step_id ? `[${line.step_id}] ` : ""}${line.message}`;
      log.append(span, "\n");
      after = Math.max(after, line.seq);
    }
    if (status && status.textContent !== body.status) {
      status.textContent = body.status;
      status.className = `status status-${body.status.toLowerCase()}`;
    }
    for (const step of body.steps) {
      const item = document.querySelector(`#run-steps li[data-step="${CSS.escape(step.id || "")}"] .status`);
      if (item && step.status) { item.textContent = step.status; }
    }
    if (body.ended) {
      // What only a running run offers (Cancel) goes; a reload shows what an ended one offers.
      document.querySelectorAll("[data-while-running]").forEach((element) => element.remove());
    } else {
      setTimeout(poll, 1000);
    }
  }
  if (log.dataset.ended !== "true") setTimeout(poll, 1000);
}

function countdown(element) {
  const deadline = Date.parse(element.getAttribute("datetime"));
  if (Number.isNaN(deadline)) return;
  const original = element.textContent;
  function tick() {
    const left = deadline - Date.now();
    if (left <= 0) { element.textContent = `${original} (expired)`; return; }
    const days = Math.floor(left / 86400000);
    const hours = Math.floor((left % 86400000) / 3600000);
    const minutes = Math.floor((left % 3600000) / 60000);
    element.textContent = `in ${days}d ${hours}h ${minutes}m`;
    element.title = original;
    setTimeout(tick, 30000);
  }
  tick();
}

function checkPattern(input) {
  // JSON Schema patterns are ECMAScript regular expressions, unanchored. The HTML `pattern`
  // attribute is anchored and compiled in a stricter mode (a bare "-" in a class is an error
  // there), so the form carries the schema's pattern as data and checks it as the API does.
  let pattern;
  try {
    pattern = new RegExp(input.dataset.pattern);
  } catch (error) {
    return; // the API checks it anyway
  }
  const check = () => {
    const ok = input.value === "" || pattern.test(input.value);
    input.setCustomValidity(ok ? "" : `Must match ${input.dataset.pattern}`);
  };
  input.addEventListener("input", check);
  check();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input[data-pattern]").forEach(checkPattern);
  const log = document.getElementById("run-log");
  if (log) followLog(log);
  document.querySelectorAll("time[data-countdown]").forEach(countdown);
});
