/**
 * Bearer-JWT gate for user routes: sets `userId` on the context, maps
 * AuthError to a 401 (or 503 when the key set is unavailable).
 */
import type { MiddlewareHandler } from 'hono';
import { AppError } from './errors.js';
import { AuthError, bearerToken, type UserAuth } from '../auth/user-auth.js';

export type UserEnv = { Variables: { userId: string } };

export function requireUser(auth: UserAuth): MiddlewareHandler<UserEnv> {
  return async function userGate(c, next) {
    try {
      const { userId } = await auth.verify(bearerToken(c.req.header('authorization')));
      c.set('userId', userId);
    } catch (err: unknown) {
      if (err instanceof AuthError) {
        throw new AppError(err.status, err.code, err.message, { cause: err, headers: { 'WWW-Authenticate': 'Bearer' } });
      }
      throw err;
    }
    await next();
  };
}
