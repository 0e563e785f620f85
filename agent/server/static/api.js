// The HTTP API as the page uses it: JSON requests with the tab's API key, uploads, and run events read from
// server-sent events over fetch (so the key goes in a header and a reconnect can send Last-Event-ID).

const KEY = "vitron.key";

/** An error the server answered with (its type, field, problem and fix), or the network's own. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || error.problem || (status ? `the server answered ${status}` : "the server cannot be reached"));
    this.status = status;
    this.type = error.type || (status ? "HTTPError" : "NetworkError");
    this.field = error.field || null;
    this.problem = error.problem || this.message;
    this.fix = error.fix || (status ? null : "check that vitron serve is running, then try again");
  }
}

let askForKey = async () => false; // set by the page: shows the key dialog, true once a key was given

export const api = {
  key: () => sessionStorage.getItem(KEY),
  setKey(key) {
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
  },
  onUnauthorized(handler) {
    askForKey = handler;
  },

  headers(extra = {}) {
    const key = this.key();
    return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
  },

  /** Fetch with the key; a 401 asks for a key (once per call) and tries again. */
  async fetch(method, path, { json, body, headers = {}, signal } = {}) {
    for (let attempt = 0; ; attempt++) {
      const sent = { ...headers };
      let payload = body;
      if (json !== undefined) {
        sent["Content-Type"] = "application/json";
        payload = JSON.stringify(json);
      }
      let response;
      try {
        response = await fetch(path, { method, headers: this.headers(sent), body: payload, signal });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new ApiError(0, null);
      }
      if (response.status === 401 && attempt === 0 && (await askForKey())) continue;
      if (!response.ok) {
        const data = await response.json().catch(() => null);
        throw new ApiError(response.status, data);
      }
      return response;
    }
  },

  async json(method, path, json) {
    const response = await this.fetch(method, path, { json });
    return response.status === 204 ? null : response.json();
  },

  get: (path) => api.json("GET", path),
  post: (path, json = {}) => api.json("POST", path, json),

  /** Upload a file or blob: its description (sha256, kind, media_type, shape, url). */
  async upload(blob, kind = null) {
    const form = new FormData();
    form.append("file", blob, blob.name || "upload");
    const path = kind ? `/artifacts?kind=${encodeURIComponent(kind)}` : "/artifacts";
    return (await this.fetch("POST", path, { body: form })).json();
  },

  /** Yield a run's events, {seq, event, data}, from a POST that starts it or a GET that joins it. */
  async *events(method, path, { json, lastEventId = null, signal } = {}) {
    const headers = { Accept: "text/event-stream" };
    if (lastEventId) headers["Last-Event-ID"] = String(lastEventId);
    const response = await this.fetch(method, path, { json, headers, signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = parseEvent(block);
        if (event) yield event;
      }
    }
  },
};

function parseEvent(block) {
  let name = "message", id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (!data.length) return null;
  return { seq: id === null ? null : Number(id), event: name, data: JSON.parse(data.join("\n")) };
}
