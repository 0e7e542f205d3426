/**
 * Reads an upstream's reply body up to a byte limit. A reply that says (or
 * turns out) to be larger is cancelled at the limit, so a broken or hostile
 * upstream costs at most `maxBytes` of memory, never the whole stream.
 */

export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
  constructor(readonly maxBytes: number) {
    super(`expected a reply of at most ${maxBytes} bytes, got more`);
  }
}

/** The body as UTF-8 text. @throws BodyTooLargeError past `maxBytes`. */
export async function readBoundedText(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw new BodyTooLargeError(maxBytes);
  }
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw new BodyTooLargeError(maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, total).toString('utf8');
}

/**
 * The same for a Node stream of bytes (undici's `request` body):
 * `declaredLength` is the reply's content-length header, if any. The stream
 * is destroyed at the limit.
 */
export async function readBoundedStream(
  body: AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown },
  declaredLength: string | string[] | undefined,
  maxBytes: number,
): Promise<string> {
  const declared = Number(Array.isArray(declaredLength) ? declaredLength[0] : declaredLength);
  if (Number.isFinite(declared) && declared > maxBytes) {
    body.destroy();
    throw new BodyTooLargeError(maxBytes);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.byteLength;
    if (total > maxBytes) {
      body.destroy();
      throw new BodyTooLargeError(maxBytes);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total).toString('utf8');
}
