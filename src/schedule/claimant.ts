/**
 * Who holds a device claim. A browser has one device id but several
 * contexts (each tab, the service worker) that plan independently; a claim
 * is made by one context, so the ledger's holder is the device id and the
 * context id joined by a character neither may contain. The claim service
 * compares holders as opaque strings: a re-claim by the same context renews
 * its lease, any other context of the same device is refused like another
 * device. A claim without a context id is held by the device as a whole
 * (older clients).
 */

/** Not in the device id or context id alphabet ([A-Za-z0-9._:-]), so a holder splits one way only. */
export const CONTEXT_SEPARATOR = '/';

/** The holder a claim by this device (and context, when given) is recorded under. */
export function claimantOf(deviceId: string, contextId?: string): string {
  return contextId === undefined ? deviceId : `${deviceId}${CONTEXT_SEPARATOR}${contextId}`;
}

/**
 * Whether `claimedBy` is the given claimant: the exact context when a
 * context id is given, else the device in any of its contexts.
 */
export function isHeldBy(claimedBy: string | null, deviceId: string, contextId?: string): boolean {
  if (claimedBy === null) return false;
  if (contextId !== undefined) return claimedBy === claimantOf(deviceId, contextId);
  return claimedBy === deviceId || claimedBy.startsWith(`${deviceId}${CONTEXT_SEPARATOR}`);
}
