/**
 * IANA time zones as devices report them: canonicalised through Intl (names
 * are case-insensitive and have aliases, so `europe/berlin` and
 * `Europe/Berlin` are one zone), and one wall-clock formatter per canonical
 * zone. Both caches are bounded: zone names come from devices, and a client
 * sending endless spellings must not grow the process.
 */

/** Longest zone name accepted (the longest IANA names are about 30 characters). */
export const MAX_TIME_ZONE_LENGTH = 64;
/** Entries each cache holds at most; the IANA database has about 600 zones and links. */
export const TIME_ZONE_CACHE_LIMIT = 1024;

// Raw spelling → canonical name, or null when Intl refuses it (so junk is
// answered from the cache too, and can only evict, never grow, the map).
const canonicalByName = new Map<string, string | null>();
const formatterByZone = new Map<string, Intl.DateTimeFormat>();

/** Sets `key`, dropping the oldest entry when the map is full (Maps iterate in insertion order). */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= TIME_ZONE_CACHE_LIMIT && !map.has(key)) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
  map.set(key, value);
}

/**
 * The zone's canonical name as Intl resolves it
 * (`Intl.DateTimeFormat(undefined, { timeZone }).resolvedOptions().timeZone`),
 * or undefined when it is not a zone Intl knows.
 */
export function canonicalTimeZone(name: unknown): string | undefined {
  if (typeof name !== 'string' || name === '' || name.length > MAX_TIME_ZONE_LENGTH) return undefined;
  const cached = canonicalByName.get(name);
  if (cached !== undefined) return cached ?? undefined;
  let canonical: string | null;
  try {
    canonical = new Intl.DateTimeFormat(undefined, { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    canonical = null;
  }
  remember(canonicalByName, name, canonical);
  return canonical ?? undefined;
}

/** Whether Intl knows the zone (in any spelling it accepts). */
export function isValidTimeZone(name: unknown): boolean {
  return canonicalTimeZone(name) !== undefined;
}

/**
 * A formatter giving the zone's wall clock as numeric parts (Gregorian,
 * Latin digits, 00–23 hours), cached under the canonical name; undefined for
 * an unknown zone.
 */
export function wallClockFormatter(name: string): Intl.DateTimeFormat | undefined {
  const zone = canonicalTimeZone(name);
  if (zone === undefined) return undefined;
  const cached = formatterByZone.get(zone);
  if (cached) return cached;
  const fmt = new Intl.DateTimeFormat('en-US-u-ca-gregory-nu-latn', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  remember(formatterByZone, zone, fmt);
  return fmt;
}

/** How many entries the caches hold (tests hold them to their bound). */
export function timeZoneCacheSizes(): { names: number; formatters: number } {
  return { names: canonicalByName.size, formatters: formatterByZone.size };
}
