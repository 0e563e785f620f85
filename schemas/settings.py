"""Settings from `VITRON_*` environment variables (and the dotenv file `VITRON_ENV_FILE` names), embedded defaults
otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

ENV_FILE_SETTING = "VITRON_ENV_FILE"
"""The one dotenv file read. A `.env` in the working directory is not: it would silently redirect the database and
the broker of whoever runs `vitron` there."""


class VitronSettings(BaseSettings):
    """Where data lives and which real components to use. Every field reads `VITRON_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="VITRON_", extra="ignore")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[Any, ...]:
        named = os.environ.get(ENV_FILE_SETTING)
        if not named:
            return init_settings, env_settings, file_secret_settings
        if not Path(named).expanduser().is_file():
            from .errors import InvalidInput

            raise InvalidInput(f"{ENV_FILE_SETTING} names {named}, which is not a file", field=ENV_FILE_SETTING,
                               fix="name an existing dotenv file, or unset it")
        return (init_settings, env_settings, DotEnvSettingsSource(settings_cls, env_file=Path(named).expanduser()),
                file_secret_settings)

    home: Path = Field(default_factory=lambda: Path.home() / ".vitron", description="The data folder.")
    artifacts_dir: Path | None = Field(default=None, description="Artifact store root; default HOME/artifacts.")
    workflows_dir: Path | None = Field(
        default=None, description="Saved workflows (YAML or JSON files, called by their names); default HOME/workflows."
    )
    models_file: Path | None = Field(
        default=None, description="YAML file that configures real model backends; default HOME/models.yaml."
    )
    database_url: str | None = Field(
        default=None,
        description="Session database URL (sqlite:///… or postgresql://…); default SQLite at HOME/vitron.db.",
    )
    database_auto_upgrade: bool = Field(
        default=True, description="Upgrade an older session database on start; if false, refuse and name the command."
    )

    planner: str = Field(
        default="mini",
        description="Who plans a turn: mini (the small trained planner that ships with vitron: plain English, and "
        "the grammar as it is), explicit (the text is the invocation grammar), chat (a LangChain chat model, "
        "VITRON_CHAT_MODEL) or vitron (a local VITRON model, VITRON_PLANNER_MODEL).",
    )
    chat_model: str | None = Field(
        default=None, description="The chat planner's model, as provider:model (e.g. openai:gpt-4o-mini)."
    )
    chat_images: bool = Field(
        default=True, description="Show the chat planner the turn's images and a few frames of its videos; false "
        "for a chat model that takes text only."
    )
    planner_model: Path | None = Field(default=None, description="Folder of a local VITRON planner model.")
    approval: bool = Field(default=False, description="Pause before heavy steps until the user approves.")
    max_rounds: int = Field(default=3, ge=1, le=20, description="Plans per turn when the planner sees results.")
    max_corrections: int = Field(default=2, ge=0, le=10, description="Times a refused plan goes back to the planner.")

    broker_url: str | None = Field(
        default=None, description="Celery broker (redis://host:6379/0); unset, jobs run in-process (LocalExecutor)."
    )
    result_backend: str | None = Field(
        default=None,
        description="Celery result backend (redis://…, db+postgresql://…, db+sqlite:///…); default the broker "
        "when it is Redis.",
    )
    visibility_timeout_s: int = Field(
        default=30, ge=5,
        description="Seconds after a Redis-brokered job's worker stopped renewing it (the whole worker died) before "
        "the job goes back to the queue for a live worker. Live workers renew their jobs every sixth of it, so a job "
        "may run far longer.",
    )
    job_time_limit_s: int = Field(
        default=3600, ge=0, description="Seconds a job (or a chunk of a long video's) may run on a worker before it "
        "is stopped and fails; 0: no limit.",
    )
    job_time_limits: dict[str, int] = Field(
        default_factory=dict, description='Per-module time limits over VITRON_JOB_TIME_LIMIT_S, as JSON: '
        '{"video_generation": 7200}.',
    )
    worker_wait_s: float = Field(
        default=120.0, ge=1, description="Seconds a job may wait while no live worker serves its queue before it "
        "fails, naming the queue (a client never waits without a bound).",
    )
    broker_timeout_s: float = Field(
        default=3.0, gt=0, description="Seconds to reach the job broker before a turn starts (and `vitron worker`); "
        "past them the turn is refused, naming VITRON_BROKER_URL.",
    )
    model_budget: str = Field(
        default="8GB",
        description="Memory each worker process's model cache may hold (8GB, 512MB, 1.5GiB, 0 for one model at a "
        "time, or unlimited); least recently used models are evicted past it.",
    )

    store_url: str | None = Field(
        default=None,
        description="Shared artifact store (s3://bucket/prefix) for workers on other machines; the local "
        "artifact folder becomes its cache. Credentials come from the usual AWS variables or config.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible service (MinIO, …); unset, AWS itself."
    )
    turn_lease_s: float = Field(
        default=30.0, ge=2, description="Seconds a turn's lease on its session lasts without a heartbeat (renewed "
        "every third of it while the turn runs): how long a turn whose process died on another host blocks its "
        "session. On one host a dead process's lease is taken over at once.",
    )
    max_plan_steps: int = Field(
        default=64, ge=1, description="Steps a plan may have; a longer one is refused before anything is recorded.",
    )
    max_turn_chars: int = Field(
        default=20_000, ge=1, description="Characters a turn's text may have; a longer one is refused.",
    )
    # Read by `schemas.errors.echo_limit` from the same variable when an error is made (an error cannot wait for
    # the settings, which may be what failed); declared here so that it is listed, checked and documented.
    error_echo_chars: int = Field(
        default=2000, ge=80, description="How much of a problem's text an error keeps (it may quote the bad input); "
        "the rest of the middle is left out and counted.",
    )
    store_group_readable: bool = Field(
        default=True, description="Store files readable by their group (mode 0640), so a worker running as another "
        "user of the group can read them; false: by their owner only (0600).",
    )
    store_verify_reads: bool = Field(
        default=True, description="Check a stored object's SHA-256 when a job reads it (streamed; cheap next to "
        "decoding), so a damaged object is reported as such instead of decoding to wrong pixels; false: trust the "
        "files.",
    )
    store_delete_grace_s: float = Field(
        default=120.0, ge=0, description="Seconds after an object was last put during which deleting a session "
        "leaves it in the store even when no session references it: a recording of the same content elsewhere may "
        "be on its way (its put comes before its row). 0: remove at once.",
    )

    chunk_frames: int = Field(
        default=120, ge=0,
        description="Frames per chunk when a video job (segmentation, editing) on Celery workers is split so several "
        "workers share one video; videos no longer than this run whole (0: never split).",
    )

    secret_key: str | None = Field(
        default=None, description="The HTTP server's key for signing download links; default a random one kept in "
        "HOME/server.key.")
    url_ttl_s: int = Field(default=86400, ge=10, description="Seconds a signed download link works.")
    # The input limits: each is checked before a file is read whole or decoded, so a small file that claims a huge
    # picture (a 1 MB PNG of 20000x20000 decodes to 1.2 GB) is refused by its header, not by running out of memory.
    max_upload_bytes: int = Field(default=200_000_000, ge=1024,
                                  description="The largest file taken in whole, in bytes: an HTTP upload (a data URL "
                                  "counts its decoded bytes), or an image, mask or scribble file given by path. "
                                  "Videos given by path are streamed, never held: VITRON_MAX_VIDEO_PIXELS bounds them.")
    max_pixels: int = Field(default=50_000_000, ge=1,
                            description="The most pixels (width x height) an image, mask or scribble, or one video "
                            "frame, may have: any file given by path or uploaded; checked from the file's header, "
                            "before anything is decoded (50 MP: the largest camera photos, 8K video frames).")
    max_video_pixels: int = Field(default=40_000_000_000, ge=1,
                                  description="The most pixels a video may have in all (frames x width x height): "
                                  "checked from the container's header, then while its packets are counted, before "
                                  "any frame is decoded (40 G: ten minutes of 1080p at 30 fps).")
    fetch_urls: str = Field(default="", description="Hosts the OpenAI endpoint may fetch image URLs from "
                            "(comma-separated); empty: images come as data URLs only.")

    @property
    def artifact_root(self) -> Path:
        return (self.artifacts_dir or self.home / "artifacts").expanduser()

    @property
    def workflows_path(self) -> Path:
        return (self.workflows_dir or self.home / "workflows").expanduser()

    @property
    def models_path(self) -> Path:
        return (self.models_file or self.home / "models.yaml").expanduser()

    @property
    def database(self) -> str:
        """The session database URL: `database_url`, or SQLite in the data folder."""
        return self.database_url or f"sqlite:///{(self.home / 'vitron.db').expanduser()}"
