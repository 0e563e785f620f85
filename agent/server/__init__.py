"""The HTTP server (`vitron serve`): FastAPI on uvicorn, a thin skin over the agent's API.

- the web page at `/` (`static/`: a chat with region sketching, a client of the routes below);
- threads (a thread is a session): `POST /threads`, `GET /threads`, `POST /threads/search`, `GET|PATCH|DELETE
  /threads/{id}`, `GET|POST /threads/{id}/history`;
- runs, after LangGraph's Agent Protocol: `POST /threads/{id}/runs` (background), `/runs/wait`, `/runs/stream`
  (server-sent events, each numbered; `GET …/runs/{run}/stream` with `Last-Event-ID` resumes), `GET …/runs/{run}`,
  `…/join`, `POST …/cancel`, and one step's `POST /threads/{id}/jobs/{job}/cancel`; an approval pause is answered
  by a run with `command.resume`;
- artifacts: `POST /artifacts` (limits on bytes and pixels, content sniffed), `GET /artifacts/{sha256}`, and
  `GET /files/{name}` behind signed links (Range answered; `&frame=N` on a video's: that frame as a PNG);
- tools and workflows: `GET /tools`, `POST /tools/{module}/invoke`, `GET /workflows`, `POST /workflows/validate`,
  `/describe`, `/run` (streamed), `/batch`;
- OpenAI-compatible: `GET /v1/models`, `POST /v1/chat/completions`;
- `GET /healthz`, `GET /readyz`.

With API keys (`vitron keys create`), every thread, run and artifact belongs to a key's owner; another owner's ids
answer 404.
"""

from .app import create_app

__all__ = ["create_app"]
