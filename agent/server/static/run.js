// One run on the page: the plan as it is made, a progress bar per step, results inline, errors with their fix,
// an approval pause to answer, a cancel button for the run and for each running step, and every event once.

import { el, withAliases } from "./dom.js";
import { artifactView, previewable } from "./media.js";

const STORE = "vitron.run.";

const LABELS = {
  visual_understanding: "Understanding", image_segmentation: "Segmentation", image_generation: "Generation",
  image_editing: "Image editing", video_segmentation: "Video segmentation", video_generation: "Video generation",
  image_to_video: "Image to video", video_editing: "Video editing",
};

export function moduleLabel(module) {
  return LABELS[module] || String(module).replace(/_/g, " ");
}

/** An error as the page shows it: what went wrong and how to fix it. */
export function errorView(error) {
  const problem = error.problem || error.message || String(error);
  return el("div", { class: "error", role: "alert" },
    el("strong", {}, error.field ? `${error.field}: ` : ""), problem,
    error.fix ? el("div", { class: "fix" }, `Fix: ${error.fix}`) : null);
}

/** Events kept for the tab, so a reload shows them again and asks the server only for the ones after. */
export const savedRuns = {
  events: (runId) => JSON.parse(sessionStorage.getItem(STORE + runId) || "[]"),
  add(runId, event) {
    const events = this.events(runId);
    events.push(event);
    try {
      sessionStorage.setItem(STORE + runId, JSON.stringify(events));
    } catch {
      // storage full: the events are still on the page; a reload replays them from the server
    }
  },
  forget: (runId) => sessionStorage.removeItem(STORE + runId),
};

export class RunView {
  /** `app` gives: lookup(alias), refresh() (the thread's artifacts), answer(action, invocations), cancelRun(run),
   * cancelJob(jobId). */
  constructor(app) {
    this.app = app;
    this.runId = null;
    this.ended = false;
    this.lastSeq = 0;
    this.shown = new Set();
    this.queue = Promise.resolve(); // handlers run one after another, in event order, even those that fetch
    this.steps = new Map();
    this.status = el("span", { class: "run-status" }, "starting");
    this.cancelButton = el("button", { type: "button", class: "cancel-run", onclick: () => this.cancel() }, "Cancel run");
    this.plan = el("ol", { class: "plan", "aria-label": "Plan" });
    this.reply = el("p", { class: "reply" });
    this.results = el("div", { class: "results" });
    this.errors = el("div", { class: "errors" });
    this.approval = el("div", { class: "approval-box" });
    this.count = el("span", { class: "count" }, "0");
    this.log = el("ol", { class: "event-log" });
    this.element = el("li", { class: "turn assistant run", dataset: { status: "running" } },
      el("div", { class: "run-head" }, el("span", { class: "who" }, "vitron"), this.status, this.cancelButton),
      this.plan, this.approval, this.errors, this.reply, this.results,
      el("details", { class: "events" }, el("summary", {}, "Events (", this.count, ")"), this.log));
  }


  /** Show one event; one already shown (by its number) is ignored, so a replay and a resumed stream never repeat. */
  handle({ seq, event, data }, { save = true } = {}) {
    if (seq !== null && (this.shown.has(seq) || seq <= this.lastSeq)) return;
    if (seq !== null) {
      this.shown.add(seq);
      this.lastSeq = seq;
    }
    if (event === "metadata") this.runId = data.run_id;
    if (event === "end") this.ended = true;
    if (save && this.runId) savedRuns.add(this.runId, { seq, event, data });
    this.log.append(el("li", { dataset: { seq: seq ?? "", event } }, `${seq ?? "·"} ${event}${summary(event, data)}`));
    this.count.textContent = String(this.log.children.length);
    const handler = this[`on_${event}`];
    if (handler) this.queue = this.queue.then(() => handler.call(this, data)).catch((error) => this.errors.append(errorView(error)));
    return this.queue;
  }

  on_metadata() {
    this.element.dataset.runId = this.runId;
    this.status.textContent = "planning";
  }

  on_plan(data) {
    const first = this.steps.size + 1;
    data.steps.forEach((step, i) => this.step(first + i, step.module, step.command));
    this.status.textContent = data.steps.length === 1 ? "1 step" : `${data.steps.length} steps`;
    if (data.reply) this.reply.replaceChildren(...withAliases(data.reply));
  }

  step(position, module, command) {
    let row = this.steps.get(position);
    if (!row) {
      row = {
        element: el("li", { class: "step", dataset: { position, status: "planned" } }),
        progress: el("progress", { max: 1, value: 0, "aria-label": `Step ${position} progress` }),
        state: el("span", { class: "state" }, "planned"),
        cancel: el("button", { type: "button", class: "cancel-step", hidden: true }, "Cancel step"),
        outputs: el("div", { class: "outputs" }),
      };
      row.cancel.addEventListener("click", () => this.cancelStep(row));
      row.element.append(
        el("div", { class: "step-head" }, el("span", { class: "module" }, `${position}. ${moduleLabel(module)}`),
          el("span", { class: "command" }, ...withAliases(command || "")), row.state, row.cancel),
        row.progress, row.outputs);
      this.steps.set(position, row);
      this.plan.append(row.element);
    }
    return row;
  }

  setStep(data, status, text) {
    const row = this.step(data.position, data.module, data.command);
    row.element.dataset.status = status;
    row.state.textContent = text ?? status;
    if (status !== "running") row.cancel.hidden = true;
    return row;
  }

  on_step_started(data) {
    const row = this.setStep(data, "running");
    row.jobId = data.job_id;
    row.cancel.hidden = false;
  }

  on_progress(data) {
    const row = this.setStep(data, "running", data.message || "running");
    row.progress.value = data.fraction;
  }

  on_cached(data) {
    this.setStep(data, "running", "from the cache");
  }

  async on_step_finished(data) {
    const row = this.setStep(data, "succeeded", data.cached ? "done (cached)" : `done in ${data.seconds}s`);
    row.progress.value = 1;
    await this.app.refresh();
    for (const alias of Object.values(data.outputs || {})) this.showArtifact(alias, row.outputs);
    for (const note of data.notes || []) row.outputs.append(el("p", { class: "note" }, note));
  }

  on_step_failed(data) {
    const row = this.setStep(data, "failed");
    row.outputs.append(errorView({ problem: data.error }));
  }

  on_step_skipped(data) {
    const row = this.setStep(data, "skipped");
    row.outputs.append(el("p", { class: "note" }, `Skipped: ${data.reason}`));
  }

  on_approval(data) {
    const inputs = new Map();
    const answer = async (action) => {
      for (const button of box.querySelectorAll("button")) button.disabled = true;
      const invocations = action === "edit"
        ? data.steps.map((s) => ({ module: s.module, command: inputs.get(s.position).value })) : undefined;
      box.dataset.answered = action;
      try {
        await this.app.answer(action, invocations);
      } catch (error) {
        box.append(errorView(error));
        for (const button of box.querySelectorAll("button")) button.disabled = false;
      }
    };
    const box = el("section", { class: "approval", "aria-label": "Approval" },
      el("h3", {}, "Waiting for your approval"),
      el("p", {}, "These steps are heavy. Run them as planned, skip them, or change their commands and run those."),
      el("ol", {}, data.steps.map((s) => {
        const input = el("input", { type: "text", value: s.command, "aria-label": `Command of step ${s.position}` });
        inputs.set(s.position, input);
        return el("li", { dataset: { position: s.position } }, el("span", { class: "module" }, moduleLabel(s.module)), input);
      })),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "primary", onclick: () => answer("approve") }, "Approve"),
        el("button", { type: "button", onclick: () => answer("deny") }, "Deny"),
        el("button", { type: "button", onclick: () => answer("edit") }, "Run edited")));
    this.approval.replaceChildren(box);
    for (const s of data.steps) this.setStep(s, "waiting", "waiting for approval");
  }

  on_message(data) {
    this.reply.replaceChildren(...withAliases(data.text));
  }

  on_error(data) {
    this.errors.append(errorView(data));
  }

  async on_end(data) {
    this.element.dataset.status = data.status;
    this.status.textContent = { success: "done", interrupted: "waiting for approval", cancelled: "cancelled",
      error: "failed" }[data.status] || data.status;
    this.cancelButton.hidden = true;
    for (const row of this.steps.values()) row.cancel.hidden = true;
    if (data.error && !this.errors.children.length) this.errors.append(errorView(data.error));
    if (data.reply && data.reply.text && !this.reply.textContent) this.reply.replaceChildren(...withAliases(data.reply.text));
    const made = (data.reply && data.reply.artifacts) || [];
    if (made.some((m) => m.alias && !this.app.lookup(m.alias))) await this.app.refresh(); // each step's already came
    for (const { alias } of made) {
      if (alias && !this.element.querySelector(`figure[data-alias="${alias}"]`)) this.showArtifact(alias, this.results);
    }
    if (this.runId && data.status !== "interrupted") savedRuns.forget(this.runId);
  }

  showArtifact(alias, where) {
    const entry = this.app.lookup(alias);
    if (entry && previewable(entry)) where.append(artifactView(entry, (a) => this.app.lookup(a)));
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      await this.app.cancelRun(this.runId);
      this.status.textContent = "cancelling";
    } catch (error) {
      this.errors.append(errorView(error));
      this.cancelButton.disabled = false;
    }
  }

  async cancelStep(row) {
    row.cancel.disabled = true;
    try {
      await this.app.cancelJob(row.jobId);
      row.state.textContent = "cancelling";
    } catch (error) {
      row.outputs.append(errorView(error));
    }
  }
}

function summary(event, data) {
  if (event === "progress") return ` ${data.position}: ${Math.round(data.fraction * 100)}%`;
  if (event.startsWith("step_") || event === "cached") return ` ${data.position}`;
  if (event === "end") return `: ${data.status}`;
  return "";
}
