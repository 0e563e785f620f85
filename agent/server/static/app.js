// The page: threads, a thread's history and gallery, the composer (upload, sketch, send), and the runs it follows.
// Everything goes through the HTTP API (api.js); the page keeps only the tab's key and the events of its run.

import { api } from "./api.js";
import { el, withAliases } from "./dom.js";
import { artifactView, lineageText, previewable } from "./media.js";
import { RunView, errorView, moduleLabel, savedRuns } from "./run.js";
import { Sketch } from "./sketch.js";

const $ = (id) => document.getElementById(id);
const ACTIVE = "vitron.active"; // {thread, run}: the run this tab follows, picked up again after a reload
const RECONNECT_TRIES = 20;

const app = {
  threadId: null,
  artifacts: new Map(), // alias → the history's artifact entry (with its signed link and lineage)
  attachment: null, // the upload the next turn works on: {entry, sketch}
  views: new Set(),

  lookup(alias) {
    return this.artifacts.get(alias) || null;
  },

  async refresh() {
    if (!this.threadId) return;
    const history = await api.get(`/threads/${this.threadId}/history`);
    this.setArtifacts(history.artifacts);
  },

  setArtifacts(entries) {
    this.artifacts = new Map(entries.map((a) => [a.alias, a]));
    renderGallery(entries);
  },

  async answer(action, invocations) {
    const command = { resume: { action, ...(invocations ? { invocations } : {}) } };
    await startRun({ command });
  },

  cancelRun: (runId) => api.post(`/threads/${app.threadId}/runs/${runId}/cancel`),
  cancelJob: (jobId) => api.post(`/threads/${app.threadId}/jobs/${jobId}/cancel`),
};

// -- threads ----------------------------------------------------------------------------------------------

async function loadThreads() {
  const threads = await api.get("/threads?limit=200");
  const list = $("thread-list");
  list.replaceChildren(...threads.map(threadItem));
  $("no-threads").hidden = threads.length > 0;
  return threads;
}

function threadItem(thread) {
  const title = thread.metadata.title || "Untitled thread";
  const when = new Date(thread.updated_at).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  const open = el("button", { type: "button", class: "open", onclick: () => openThread(thread.thread_id) },
    el("span", { class: "thread-title" }, title), el("small", {}, `${when} · ${thread.turns} turns`));
  const item = el("li", { dataset: { threadId: thread.thread_id } }, open,
    el("button", { type: "button", class: "icon", title: "Rename", "aria-label": `Rename ${title}`,
      onclick: () => renameThread(thread, item) }, "✎"),
    el("button", { type: "button", class: "icon danger", title: "Delete", "aria-label": `Delete ${title}`,
      onclick: () => deleteThread(thread) }, "×"));
  if (thread.thread_id === app.threadId) open.setAttribute("aria-current", "true");
  return item;
}

async function newThread(title = "") {
  const thread = await api.post("/threads", { metadata: { title } });
  await openThread(thread.thread_id);
  await loadThreads();
  return thread.thread_id;
}

function renameThread(thread, item) {
  const input = el("input", { type: "text", value: thread.metadata.title || "", "aria-label": "New title" });
  const save = async () => {
    await api.json("PATCH", `/threads/${thread.thread_id}`, { metadata: { title: input.value.trim() } });
    await loadThreads();
    if (thread.thread_id === app.threadId) $("thread-title").textContent = input.value.trim();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") save().catch(showError);
    if (e.key === "Escape") loadThreads();
  });
  input.addEventListener("blur", () => save().catch(showError));
  item.replaceChildren(input);
  input.focus();
  input.select();
}

async function deleteThread(thread) {
  if (!confirm(`Delete “${thread.metadata.title || "Untitled thread"}” and everything made in it?`)) return;
  try {
    await api.json("DELETE", `/threads/${thread.thread_id}`);
  } catch (error) {
    return showError(error);
  }
  if (thread.thread_id === app.threadId) {
    app.threadId = null;
    history.replaceState(null, "", location.pathname);
    $("log").replaceChildren();
    $("thread-title").textContent = "";
    renderGallery([]);
  }
  await loadThreads();
}

async function openThread(threadId) {
  const [thread, past] = await Promise.all([api.get(`/threads/${threadId}`), api.get(`/threads/${threadId}/history`)]);
  app.threadId = threadId;
  app.views.clear();
  history.replaceState(null, "", `#thread=${threadId}`);
  $("thread-title").textContent = thread.metadata.title || "Untitled thread";
  for (const item of $("thread-list").children) {
    const open = item.querySelector(".open");
    if (open) open.toggleAttribute("aria-current", item.dataset.threadId === threadId);
  }
  document.body.classList.remove("threads-open");
  app.setArtifacts(past.artifacts);
  const live = past.runs.length && ["pending", "running", "interrupted"].includes(past.runs.at(-1).status)
    ? past.runs.at(-1) : null;
  renderHistory(past, Boolean(live));
  if (live) resumeRun(live.run_id).catch(showError); // followed in the background: the page stays usable
  $("text").focus();
}

// -- history and gallery ------------------------------------------------------------------------------------

function renderHistory(past, liveTurn) {
  const log = $("log");
  log.replaceChildren();
  const stepsOf = Map.groupBy(past.steps, (s) => s.turn_id);
  const turns = past.turns;
  turns.forEach((turn, i) => {
    if (turn.role === "user") {
      log.append(userBubble(turn.text, turn.artifacts.map((a) => app.lookup(a)).filter((a) => a && a.made_by === "upload")));
      const reply = turns[i + 1] && turns[i + 1].role === "assistant" ? turns[i + 1] : null;
      const last = !turns.slice(i + 1).some((t) => t.role === "user");
      if (reply || !(last && liveTurn)) log.append(pastReply(stepsOf.get(turn.id) || [], reply));
    }
  });
  if (!turns.length) log.append(el("li", { class: "empty" }, "Upload a photo or a video, sketch a region, and say what to do."));
}

function userBubble(text, uploads, region = null) {
  return el("li", { class: "turn user" }, el("span", { class: "who" }, "you"),
    el("p", {}, ...withAliases(text)),
    uploads.length ? el("div", { class: "attachments" }, uploads.map((a) => artifactView(a, (x) => app.lookup(x)))) : null,
    region ? el("p", { class: "note" }, `Region: ${region}`) : null);
}

function pastReply(steps, reply) {
  const plan = el("ol", { class: "plan" }, steps.map((step) => {
    const outputs = [...app.artifacts.values()].filter((a) => a.step_id === step.id && previewable(a));
    return el("li", { class: "step", dataset: { position: step.position, status: step.status } },
      el("div", { class: "step-head" }, el("span", { class: "module" }, `${step.position}. ${moduleLabel(step.module)}`),
        el("span", { class: "command" }, ...withAliases(step.command)), el("span", { class: "state" }, step.status)),
      step.error ? errorView({ problem: step.error }) : null,
      el("div", { class: "outputs" }, outputs.map((a) => artifactView(a, (x) => app.lookup(x)))));
  }));
  return el("li", { class: "turn assistant", dataset: { status: "done" } }, el("span", { class: "who" }, "vitron"),
    steps.length ? plan : null, reply ? el("p", { class: "reply" }, ...withAliases(reply.text || reply.reply || "")) : null);
}

function renderGallery(entries) {
  const shown = entries.filter((a) => a.kind !== "embedding");
  $("gallery-count").textContent = String(shown.length);
  $("gallery-list").replaceChildren(...shown.map((a) => el("li", { dataset: { alias: a.alias } },
    a.kind === "image" || a.kind === "mask" ? el("img", { src: a.url, alt: "", loading: "lazy" }) : el("span", { class: "kind" }, a.kind),
    el("div", {}, el("strong", { class: "alias" }, `@${a.alias}`), " ", el("span", { class: "lineage" }, lineageText(a)),
      a.url ? el("a", { href: a.url, download: a.alias, class: "download" }, "Download") : null))));
}

// -- the composer -----------------------------------------------------------------------------------------

async function attach(file) {
  clearComposerError();
  if (!file) return;
  const status = $("upload-status");
  status.textContent = `Uploading ${file.name || "the file"}…`;
  try {
    const entry = await api.upload(file);
    if (entry.kind !== "image" && entry.kind !== "video") throw new Error(`a ${entry.kind} cannot start a turn`);
    showAttachment(entry);
    status.textContent = `${entry.kind === "video" ? "Video" : "Image"} ready: sketch a region on it, or just ask.`;
  } catch (error) {
    status.textContent = "";
    showError(error);
  } finally {
    $("file").value = "";
  }
}

function showAttachment(entry) {
  const [height, width] = entry.kind === "video" ? entry.shape.slice(1, 3) : entry.shape.slice(0, 2);
  const media = entry.kind === "video"
    ? el("video", { src: entry.url, muted: true, preload: "auto", playsinline: true, "aria-label": "The uploaded video, at the chosen frame" })
    : el("img", { src: entry.url, alt: "The uploaded image" });
  const canvas = el("canvas", { class: "sketch", tabindex: "-1", "aria-label": "Draw the region here" });
  const stage = el("div", { class: "stage sketching" }, media, canvas);
  stage.style.width = `min(100%, 560px, calc(34vh * ${width / height}))`; // the picture's shape, on any screen
  stage.style.aspectRatio = `${width} / ${height}`; // its place is kept before it loads: a sketch never shifts
  $("stage").replaceChildren(stage);
  const sketch = new Sketch(canvas, width, height, () => {
    $("region-text").value = sketch.toText();
    $("region-kind").textContent = sketch.kind ? `(${sketch.kind})` : "";
  });
  app.attachment = { entry, sketch, frame: 0 };
  $("attachment").hidden = false;
  $("video-note").hidden = $("frame-field").hidden = entry.kind !== "video";
  if (entry.kind === "video") chooseFrames(media, entry.shape[0]);
  $("region-text").value = "";
  $("region-kind").textContent = "";
  setTool("box");
  new ResizeObserver(() => sketch.redraw()).observe(canvas);
}

/** The frame slider of a video: the player shows the chosen frame, and the region is drawn on it. */
function chooseFrames(video, frames) {
  const slider = $("frame");
  slider.max = String(Math.max(0, frames - 1));
  slider.value = "0";
  $("frame-number").textContent = "0";
  slider.oninput = () => {
    const frame = Number(slider.value);
    const fps = video.duration ? frames / video.duration : 8;
    video.currentTime = (frame + 0.5) / fps; // the middle of the frame's time: that frame, whatever the rounding
    $("frame-number").textContent = String(frame);
    app.attachment.frame = frame;
  };
}

function setTool(tool) {
  if (app.attachment) app.attachment.sketch.setTool(tool);
  for (const button of document.querySelectorAll("[data-tool]")) button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
}

function dropAttachment() {
  app.attachment = null;
  $("attachment").hidden = true;
  $("frame-field").hidden = true;
  $("stage").replaceChildren();
  $("upload-status").textContent = "";
}

async function send(event) {
  event.preventDefault();
  clearComposerError();
  const text = $("text").value.trim();
  if (!text) return showError({ field: "message", problem: "say what to do", fix: "type a request, e.g. “segment it, then make it blue”" });
  const input = { text };
  let regionText = null;
  try {
    if (app.attachment) {
      const { entry, sketch } = app.attachment;
      input[entry.kind] = entry.sha256;
      const region = await sketch.region((blob, kind) => api.upload(blob, kind));
      if (region) {
        if (app.attachment.frame) region.frame = app.attachment.frame;
        input.region = region;
        regionText = `${region.kind} ${sketch.toText()}` + (region.frame ? ` on frame ${region.frame}` : "");
      }
    }
    if (!app.threadId) await newThread(text.slice(0, 60));
  } catch (error) {
    return showError(error);
  }
  $("log").querySelector(".empty")?.remove();
  $("log").append(userBubble(text, app.attachment ? [app.attachment.entry] : [], regionText));
  $("text").value = "";
  dropAttachment();
  await startRun({ input });
}

/** Start a run on the open thread and follow it on the page. */
async function startRun(body) {
  const view = new RunView(app);
  app.views.add(view);
  $("log").append(view.element);
  const path = `/threads/${app.threadId}/runs/stream`;
  await follow(view, "POST", path, { ...body, multitask_strategy: "reject" });
}

/** Show a run the page was following before a reload: its saved events, then the rest from the server. */
async function resumeRun(runId) {
  const view = new RunView(app);
  app.views.add(view);
  $("log").append(view.element);
  for (const event of savedRuns.events(runId)) view.handle(event, { save: false });
  await follow(view, "GET", `/threads/${app.threadId}/runs/${runId}/stream`);
}

/** Read a run's events into its view; a dropped stream is joined again from the last event shown. */
async function follow(view, method, path, json) {
  const threadId = app.threadId;
  for (let attempt = 0; attempt <= RECONNECT_TRIES; attempt++) {
    try {
      for await (const event of api.events(method, path, { json, lastEventId: view.lastSeq || null })) {
        if (app.threadId !== threadId) return; // another thread was opened: the run goes on without this page
        view.handle(event);
        if (event.event === "metadata") sessionStorage.setItem(ACTIVE, JSON.stringify({ thread: threadId, run: view.runId }));
      }
    } catch (error) {
      if (!view.runId || (error.status && error.status !== 502 && error.status !== 503)) {
        view.handle({ seq: null, event: "error", data: error });
        view.handle({ seq: null, event: "end", data: { status: "error" } });
        break;
      }
    }
    if (view.ended || !view.runId) break;
    method = "GET";
    path = `/threads/${threadId}/runs/${view.runId}/stream`;
    json = undefined;
    await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)));
  }
  await view.queue;
  sessionStorage.removeItem(ACTIVE);
  loadThreads().catch(() => {});
}

function showError(error) {
  const box = $("composer-error");
  box.replaceChildren(errorView(error));
  box.hidden = false;
}

function clearComposerError() {
  $("composer-error").hidden = true;
  $("composer-error").replaceChildren();
}

// -- the key ------------------------------------------------------------------------------------------------

function askForKey() {
  const dialog = $("key-dialog");
  $("key-input").value = "";
  $("key-button").hidden = false;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const key = $("key-input").value.trim();
      if (dialog.returnValue === "ok" && key) api.setKey(key);
      resolve(dialog.returnValue === "ok" && Boolean(key));
    }, { once: true });
    dialog.showModal();
  });
}

// -- wiring -------------------------------------------------------------------------------------------------

function wire() {
  api.onUnauthorized(askForKey);
  $("new-thread").addEventListener("click", () => newThread().catch(showError));
  $("composer").addEventListener("submit", (e) => send(e).catch(showError));
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("upload").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", () => attach($("file").files[0]));
  $("remove-attachment").addEventListener("click", dropAttachment);
  for (const button of document.querySelectorAll("[data-tool]")) button.addEventListener("click", () => setTool(button.dataset.tool));
  $("undo").addEventListener("click", () => app.attachment?.sketch.undo());
  $("clear").addEventListener("click", () => app.attachment?.sketch.clear());
  $("region-text").addEventListener("change", () => {
    clearComposerError();
    try {
      app.attachment?.sketch.fromText($("region-text").value);
    } catch (error) {
      showError({ field: "region", problem: error.message });
    }
  });
  const chat = $("chat");
  chat.addEventListener("dragover", (e) => {
    e.preventDefault();
    chat.classList.add("dropping");
  });
  chat.addEventListener("dragleave", () => chat.classList.remove("dropping"));
  chat.addEventListener("drop", (e) => {
    e.preventDefault();
    chat.classList.remove("dropping");
    attach(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])][0];
    if (file) {
      e.preventDefault();
      attach(file);
    }
  });
  $("menu").addEventListener("click", () => {
    const open = document.body.classList.toggle("threads-open");
    $("menu").setAttribute("aria-expanded", String(open));
  });
  $("show-gallery").addEventListener("click", () => {
    const open = document.body.classList.toggle("gallery-open");
    $("show-gallery").setAttribute("aria-expanded", String(open));
  });
  $("key-button").addEventListener("click", () => askForKey().then((given) => given && start()));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") document.body.classList.remove("threads-open", "gallery-open");
  });
}

async function start() {
  try {
    await loadThreads();
    const wanted = new URLSearchParams(location.hash.slice(1)).get("thread");
    const active = JSON.parse(sessionStorage.getItem(ACTIVE) || "null");
    const threadId = wanted || active?.thread;
    if (threadId) await openThread(threadId);
  } catch (error) {
    showError(error);
  }
}

wire();
if (api.key()) $("key-button").hidden = false;
start().finally(() => document.body.setAttribute("data-ready", "true"));
