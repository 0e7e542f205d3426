/**
 * This browser's IANA time zone, which the webapp computes daily and weekly
 * cadences in; the coordinator advances a mission it planned in the same
 * zone. Undefined when the browser names none the server would take.
 */
export function localTimeZone(): string | undefined {
  try {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    // The server refuses a frame with a name over 64 characters; no IANA name is that long.
    return typeof zone === 'string' && zone.length > 0 && zone.length <= 64 ? zone : undefined;
  } catch {
    return undefined;
  }
}
