/**
 * One HTTP POST to a push service through undici's `dispatch` handler API.
 *
 * Why not `pool.request({ signal })`: per message that builds an
 * AbortController, an event listener, a Readable for the body and the
 * promise plumbing around them — about a third of the sender's own CPU in a
 * burst (profiled). A push response is a status line, a few headers and an
 * empty or tiny body, so a handler that keeps the status, `Retry-After` and
 * the first bytes of the body does all we need.
 */
import type { Dispatcher } from 'undici';

export type PushResponse =
  | { type: 'response'; status: number; retryAfter: string | undefined; text: string }
  | { type: 'error'; code: string; message: string };

/** Error bodies are only logged; keep the first `SNIPPET_CHARS` characters. */
export const SNIPPET_CHARS = 200;

/**
 * POSTs `body` to `path` on `dispatcher` and settles with the response, or
 * with `{type:'error', code:'ETIMEDOUT'}` when nothing complete arrived within
 * `timeoutMs` (the request is aborted then). Never rejects.
 */
export function postOnce(
  dispatcher: Dispatcher,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  timeoutMs: number,
): Promise<PushResponse> {
  return new Promise<PushResponse>((settle) => {
    let done = false;
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let retryAfter: string | undefined;
    let text = '';
    const finish = (result: PushResponse) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      settle(result);
    };
    const timer = setTimeout(() => {
      finish({ type: 'error', code: 'ETIMEDOUT', message: `no answer within ${timeoutMs} ms` });
      // A request still queued for a connection has no controller yet; onRequestStart aborts it.
      controller?.abort(new Error('push request timed out'));
    }, timeoutMs);

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (done) c.abort(new Error('push request timed out'));
      },
      onResponseStart(_c, statusCode, responseHeaders) {
        status = statusCode;
        const value = responseHeaders['retry-after'];
        retryAfter = Array.isArray(value) ? value[0] : value;
      },
      onResponseData(_c, chunk) {
        // 2xx bodies are drained unread; an error body is kept only up to the snippet.
        if (status >= 300 && text.length < SNIPPET_CHARS) text += chunk.toString('utf8');
      },
      onResponseEnd() {
        finish({ type: 'response', status, retryAfter, text: text.slice(0, SNIPPET_CHARS) });
      },
      onResponseError(_c, err) {
        finish({ type: 'error', code: errorCode(err), message: err.message });
      },
    };
    dispatcher.dispatch({ path, method: 'POST', headers, body }, handler);
  });
}

function errorCode(e: unknown): string {
  const err = e as { code?: unknown; cause?: { code?: unknown }; name?: unknown } | null;
  if (typeof err?.code === 'string') return err.code;
  if (typeof err?.cause?.code === 'string') return err.cause.code;
  return typeof err?.name === 'string' ? err.name : 'unknown';
}
