/**
 * A start refused for a reason an operator fixes outside the code (a missing
 * grant, a table not where it should be): main.ts prints its message as
 * one line and exits 1, without a stack trace.
 */
export class StartError extends Error {
  override readonly name = 'StartError';
}
