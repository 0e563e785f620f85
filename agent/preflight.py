"""What a command checks before it loads the engine, so that a service that is down is one clear line within a second
or two, not after seconds of imports: the job broker, when one is configured.

The engine checks the broker again before each turn (`tools.celery_app.check_broker`, through the executor); this
copy needs only kombu, which loads in a fraction of the time the engine takes.
"""

from __future__ import annotations

from schemas import BackendUnavailable, VitronSettings


def check_services(settings: VitronSettings | None = None) -> None:
    """Raise BackendUnavailable, naming VITRON_BROKER_URL, if the configured broker does not answer within
    VITRON_BROKER_TIMEOUT_S."""
    settings = settings or VitronSettings()
    if not settings.broker_url:
        return
    from kombu import Connection
    from kombu.utils.url import maybe_sanitize_url

    timeout = settings.broker_timeout_s
    try:
        with Connection(settings.broker_url, connect_timeout=timeout,
                        transport_options={"socket_connect_timeout": timeout, "socket_timeout": timeout}) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:  # any transport's refusal, timeout or bad address
        raise BackendUnavailable(
            f"the job broker at {maybe_sanitize_url(settings.broker_url)} did not answer within {timeout:g} s ({exc})",
            field="VITRON_BROKER_URL",
            fix="start the broker, or point VITRON_BROKER_URL at a running one (unset, jobs run in this process)",
        ) from None
