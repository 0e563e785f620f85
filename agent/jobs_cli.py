"""`vitron worker` and `vitron jobs list|cancel|workers|check`: the job queue from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from agent.console import clear_errors, fail, out

jobs_app = typer.Typer(help="Jobs: the steps sessions ran or are running, by executor job id.", no_args_is_help=True)


@clear_errors
def worker_cmd(
    queues: Annotated[str, typer.Option(help="Queues to take jobs from, comma-separated: gpu, cpu.")] = "gpu,cpu",
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs at once (pool processes); 1 per GPU.")] = 1,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run a Celery worker (needs VITRON_BROKER_URL). One per GPU: CUDA_VISIBLE_DEVICES=N vitron worker --queues gpu."""
    from tools.worker import run_worker

    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(names) - {"gpu", "cpu"})
    if unknown or not names:
        fail(f"unknown queue {', '.join(unknown) or '(none)'}: use gpu, cpu or gpu,cpu", 2)
    run_worker(names, concurrency, loglevel)


@jobs_app.command("list")
@clear_errors
def list_cmd(
    session: Annotated[str | None, typer.Option(help="Only this session's jobs (id or prefix).")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Finished jobs too, not only queued and running.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Jobs that are queued or running (with --all, finished ones too), newest last."""
    from memory import SessionMemory

    with SessionMemory.from_settings() as memory:
        ids = [memory.resolve_session_id(session)] if session else [s.id for s in memory.list_sessions(limit=1000)]
        steps = [st for sid in ids for st in memory.steps(sid) if st.job_id]
    if not all_jobs:
        steps = [st for st in steps if st.status in ("queued", "running")]
    steps.sort(key=lambda st: st.created_at)
    rows = [{"job_id": st.job_id, "session": st.session_id, "step": st.id, "module": st.module,
             "status": st.status, "progress": st.progress, "message": st.message} for st in steps]
    if as_json:
        print(json.dumps({"jobs": rows}))
        return
    table = Table("job", "session", "module", "status", "progress", "message")
    for row in rows:
        table.add_row(row["job_id"], row["session"][:8], row["module"], row["status"], f"{row['progress']:.0%}",
                      row["message"] or "")
    out.print(table)


@jobs_app.command("cancel")
@clear_errors
def cancel_cmd(job_id: Annotated[str, typer.Argument(help="The job id (see `vitron jobs list`).")]) -> None:
    """Cancel a job: a queued one never starts, a running one stops at its next progress report."""
    from agent.api import cancel_job
    from memory import SessionMemory
    from schemas import VitronSettings

    settings = VitronSettings()
    executor = None
    if settings.broker_url:  # reach the workers too; an in-process job stops when its agent sees the mark
        from tools.celery_app import make_celery
        from tools.executors import CeleryExecutor

        executor = CeleryExecutor(make_celery(settings))
    with SessionMemory.from_settings(settings) as memory:
        step = cancel_job(memory, job_id, executor)
    out.print(f"cancelled job {job_id} ({step.module}, session {step.session_id[:8]})")


@jobs_app.command("workers")
@clear_errors
def workers_cmd(
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for workers to answer.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The workers that answer: their queues, pool processes, jobs done and model cache (loads, hits, evictions)."""
    from schemas import BackendUnavailable, VitronSettings
    from tools.celery_app import make_celery

    settings = VitronSettings()
    if not settings.broker_url:
        raise BackendUnavailable("no job broker is configured, so there are no workers to ask",
                                 field="VITRON_BROKER_URL", fix="set VITRON_BROKER_URL to the workers' broker")
    inspect = make_celery(settings).control.inspect(timeout=timeout)
    stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
    rows = [{"worker": name, "queues": sorted(q["name"] for q in queues.get(name, [])),
             "processes": info.get("pool", {}).get("processes", []),
             "jobs_done": sum(info.get("total", {}).values()),
             "models": info.get("models")} for name, info in sorted(stats.items())]
    if as_json:
        print(json.dumps({"workers": rows}))
        return
    if not rows:
        out.print(f"no worker answered within {timeout:g} s (start one with `vitron worker`)")
        return
    # The model columns count loads, hits and evictions of the worker's model cache, over its pool processes.
    table = Table("worker", "queues", "processes", "jobs", "model loads", "hits", "evictions", "cached")
    for row in rows:
        models = row["models"] or {}
        table.add_row(row["worker"], ",".join(row["queues"]), str(len(row["processes"])), str(row["jobs_done"]),
                      *(str(models.get(name, "?")) for name in ("loads", "hits", "evictions")),
                      f"{models['bytes'] / 1e6:.1f} MB" if models else "?")
    out.print(table)


CHECKS = {"cpu": "image_editing", "gpu": "image_generation"}  # one tool of each queue


@jobs_app.command("check")
@clear_errors
def check_cmd(
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each queue's dry run.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A dry run on each queue: a worker takes it, finds this machine's artifact in its store and imports the
    backend it would use, without running the tool (in-process when no broker is set). Exit 1 if one fails."""
    import numpy as np

    from memory import ArtifactStore
    from schemas import VitronError, VitronSettings
    from tools.executors import make_executor
    from tools.jobs import job_spec

    settings = VitronSettings()
    store = ArtifactStore.from_settings(settings)
    # New content, written here and removed after: the worker finds it only if it sees this very store.
    image = store.put_image(np.random.default_rng().integers(0, 256, (8, 8, 3), np.uint8))
    inputs = {"image_editing": {"image": image, "command": "make it black and white"},
              "image_generation": {"command": "a check"}}
    executor = make_executor(settings, store)
    rows = []
    try:
        handles = {queue: executor.submit(job_spec(module, inputs[module], store, dry_run=True))
                   for queue, module in CHECKS.items()}
        for queue, handle in handles.items():
            row = {"queue": queue, "module": CHECKS[queue], "ok": False, "backend": None, "problem": None}
            try:
                row.update(ok=True, backend=handle.result(timeout=timeout).backend)
            except TimeoutError:
                handle.cancel()  # so it never runs later, on a worker that starts after this check
                row["problem"] = (f"no worker took the job within {timeout:g} s "
                                  f"(start one with `vitron worker --queues {queue}`)")
            except VitronError as exc:
                row["problem"] = exc.message
            rows.append(row)
    finally:
        executor.close()
        store.delete(image)
    if as_json:
        print(json.dumps({"checks": rows}))
    else:
        table = Table("queue", "module", "result", "backend")
        for row in rows:
            table.add_row(row["queue"], row["module"], "ok" if row["ok"] else f"[red]{row['problem']}[/red]",
                          row["backend"] or "")
        out.print(table)
    if not all(row["ok"] for row in rows):
        raise typer.Exit(1)
