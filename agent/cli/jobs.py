"""`vitron worker` and `vitron jobs list|cancel|workers|check`: the job queue from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from .console import clear_errors, fail, out

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
    from agent.service import list_jobs

    rows = list_jobs(session=session, include_finished=all_jobs)
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
    from agent.service import cancel_job_anywhere

    step = cancel_job_anywhere(job_id)
    out.print(f"cancelled job {job_id} ({step.module}, session {step.session_id[:8]})")


@jobs_app.command("workers")
@clear_errors
def workers_cmd(
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for workers to answer.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The workers that answer: their queues, pool processes, jobs done and model cache (loads, hits, evictions)."""
    from agent.preflight import check_services
    from agent.service import worker_rows

    check_services()  # Celery's inspection would retry a dead broker for long, then fail with a traceback
    rows = worker_rows(timeout)
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


@jobs_app.command("check")
@clear_errors
def check_cmd(
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each queue's dry run.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A dry run on each queue: a worker takes it, finds this machine's artifact in its store and imports the
    backend it would use, without running the tool (in-process when no broker is set). Exit 1 if one fails."""
    from agent.service import check_queues

    rows = [{k: v for k, v in row.items() if k != "no_worker"} | (
        {"problem": f"{row['problem']} (start one with `vitron worker --queues {row['queue']}`)"}
        if row["no_worker"] else {}) for row in check_queues(timeout)]
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
