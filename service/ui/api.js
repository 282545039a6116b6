// Talking to the tagdistill API: JSON requests, the API key, and a job's event stream.
//
// The API key (if the service asks for one) is entered once and kept in sessionStorage, so it
// lasts for this browser tab's session and is sent as "Authorization: Bearer <key>".

const KEY_ITEM = "tagdistill.apiKey";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_ITEM) || "",
  set: (value) => (value ? sessionStorage.setItem(KEY_ITEM, value) : sessionStorage.removeItem(KEY_ITEM)),
};

export function authHeaders(headers = {}) {
  const key = apiKey.get();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

/**
 * An HTTP error. `body` is the API's error body, {error: {type, code, message, param}, errors?: [...]}
 * (errors: a 422's every invalid field, each {code, message, param, ...}), or whatever else came back
 * (the text of a proxy's error page, say).
 */
export class ApiError extends Error {
  constructor(status, body) {
    super(ApiError.describe(status, body));
    this.status = status;
    this.body = body;
  }

  /** The invalid fields of a 422 ([] for other errors). */
  get fieldErrors() {
    return Array.isArray(this.body?.errors) ? this.body.errors : [];
  }

  static describe(status, body) {
    const said = (e) => (e.param ? `${e.param}: ${e.message}` : e.message);
    let text;
    if (Array.isArray(body?.errors)) text = body.errors.map(said).join("; ");
    else if (body?.error) text = said(body.error);
    else if (body && typeof body === "object") text = JSON.stringify(body);
    else text = body || "no details";
    if (status === 401 || status === 403) text += " (set an API key with the key button at the top)";
    return status ? `${status}: ${text}` : text;
  }
}

/** fetch() a route of the API; returns the parsed JSON body (null for 204), throws ApiError. */
export async function api(path, { method = "GET", json, form, headers = {}, signal } = {}) {
  const init = { method, signal, headers: authHeaders({ Accept: "application/json", ...headers }) };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (form) {
    init.body = form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `the service did not answer (${err.message})`);
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });

/**
 * Follow a job's server-sent events (GET /jobs/{id}/events?stream=1) until the server closes
 * the stream (the job ended) or `signal` aborts. fetch() rather than EventSource, so the API
 * key travels in a header; a dropped connection resumes with Last-Event-ID.
 *
 * onEvent receives each event's parsed data ({seq, time, type, data}).
 */
export async function followEvents(jobId, onEvent, { signal, onError } = {}) {
  let last = -1;
  while (!signal?.aborted) {
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (last >= 0) headers["Last-Event-ID"] = String(last);
      const response = await fetch(`/jobs/${encodeURIComponent(jobId)}/events?stream=1`, { headers, signal });
      if (!response.ok) {
        throw new ApiError(response.status, await response.json().catch(() => null));
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let data = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return; // the server ends the stream once the job has ended
        buffer += value;
        let match;
        while ((match = /\r\n|\n|\r(?!$)/.exec(buffer))) {
          const line = buffer.slice(0, match.index);
          buffer = buffer.slice(match.index + match[0].length);
          if (line === "") {
            if (data.length) {
              const event = JSON.parse(data.join("\n"));
              last = event.seq;
              onEvent(event);
            }
            data = [];
          } else if (line.startsWith("data:")) {
            data.push(line.slice(5).replace(/^ /, ""));
          }
        }
      }
    } catch (err) {
      if (signal?.aborted) return;
      onError?.(err);
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) return;
      await sleep(2000, signal);
    }
  }
}

/**
 * A real link that downloads `href`. With an API key set, the click fetches the file with the
 * key (a plain link cannot send headers) and saves it from memory.
 */
export function downloadLink(href, filename, text) {
  const link = document.createElement("a");
  link.href = href;
  link.download = filename;
  link.className = "button";
  link.textContent = text;
  link.addEventListener("click", async (event) => {
    if (!apiKey.get()) return;
    event.preventDefault();
    const response = await fetch(href, { headers: authHeaders() });
    if (!response.ok) {
      alert(ApiError.describe(response.status, await response.json().catch(() => null)));
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const save = Object.assign(document.createElement("a"), { href: url, download: filename });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  });
  return link;
}
