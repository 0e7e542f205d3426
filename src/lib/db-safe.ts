/**
 * Strings as Postgres stores them. JSON.parse accepts the NUL character
 * (`\u0000`) and lone UTF-16 surrogates, so an LLM reply can carry both; jsonb
 * refuses either anywhere in a value or a key (22P05, 22P02) and text refuses
 * NUL (22021). A write-back holding one would fail after the reply was paid
 * for, on every attempt. NUL is dropped, a lone surrogate becomes U+FFFD.
 */

const NUL = /\u0000/g;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** A string Postgres accepts in text and jsonb. */
export function textSafe(s: string): string {
  return s.replace(NUL, '').replace(LONE_SURROGATE, '\uFFFD');
}

/** A copy of a JSON value whose every string and key Postgres accepts in jsonb. */
export function jsonbSafe<T>(value: T): T {
  return clean(value) as T;
}

function clean(v: unknown): unknown {
  if (typeof v === 'string') return textSafe(v);
  if (Array.isArray(v)) return v.map(clean);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [textSafe(k), clean(x)]));
  return v;
}
