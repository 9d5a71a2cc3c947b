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
      if (!response.ok) return;
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
    if (!body.ended) setTimeout(poll, 1000);
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

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("run-log");
  if (log) followLog(log);
  document.querySelectorAll("time[data-countdown]").forEach(countdown);
});
