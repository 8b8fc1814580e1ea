// kiln status page: copy buttons, and the run page's live log (the API's
// Server-Sent Events stream, which replays from the start: events the page
// already shows are skipped by sequence number).
"use strict";

document.addEventListener("click", (ev) => {
  const button = ev.target.closest("button.copy");
  if (!button) return;
  const text = button.dataset.copy;
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
  } else {
    fallbackCopy(text, done);
  }
});

function fallbackCopy(text, done) {
  const area = document.createElement("textarea");
  area.value = text;
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
  done();
}

// One log line, as `kiln logs` prints it.
function lineText(kind, e) {
  switch (kind) {
    case "stage_started": return `==> ${e.stage}`;
    case "stage_passed": return `<== ${e.stage} passed ${e.text}`;
    case "stage_failed": return `<== ${e.stage} FAILED ${e.text}`;
    default: return `[${e.stage || "-"}] ${e.text}`;
  }
}

const log = document.getElementById("log");
if (log && log.dataset.src) {
  let last = Number(log.dataset.last || 0);
  const source = new EventSource(log.dataset.src);
  const append = (kind, e) => {
    if (e.seq <= last) return;
    last = e.seq;
    const span = document.createElement("span");
    span.className = kind;
    span.dataset.seq = e.seq;
    span.textContent = lineText(kind, e) + "\n";
    log.appendChild(span);
    log.scrollTop = log.scrollHeight;
    if (kind !== "line" && e.stage) stage(kind, e);
  };
  const stage = (kind, e) => {
    const timeline = document.getElementById("timeline");
    let item = [...timeline.children].reverse().find((li) => li.dataset.stage === e.stage);
    if (kind === "stage_started" || !item) {
      item = document.createElement("li");
      item.dataset.stage = e.stage;
      item.innerHTML = '<span class="name"></span> <span class="detail"></span>';
      item.querySelector(".name").textContent = e.stage;
      timeline.appendChild(item);
    }
    const status = { stage_started: "running", stage_passed: "passed", stage_failed: "failed" }[kind];
    item.className = "status " + status;
    item.querySelector(".detail").textContent = status + (e.text ? " · " + e.text : "");
  };
  for (const kind of ["line", "stage_started", "stage_passed", "stage_failed"]) {
    source.addEventListener(kind, (m) => append(kind, JSON.parse(m.data)));
  }
  source.addEventListener("end", (m) => {
    source.close();
    const run = JSON.parse(m.data);
    const status = document.getElementById("run-status");
    status.textContent = run.status;
    status.className = "status " + run.status;
    log.dataset.ended = "true";
  });
}
