/**
 * The HTTP listener: binding with slow-client timeouts, and closing it
 * without waiting on idle keep-alive connections.
 */
import { serve, type ServerType } from '@hono/node-server';

export interface ListenTimeouts {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
}

/** Resolves once the server accepts connections; rejects when the port cannot be bound. */
export function listen(
  fetch: (req: Request) => Response | Promise<Response>,
  port: number,
  host: string,
  timeouts: ListenTimeouts,
): Promise<ServerType> {
  // A client that opens a connection and trickles (or never finishes) its headers
  // or body is cut off; Node checks these only every connectionsCheckingInterval.
  // Upgraded sockets (/v1/ws) leave the HTTP server's tracking and are not affected.
  const serverOptions = {
    headersTimeout: timeouts.headersTimeoutMs,
    requestTimeout: timeouts.requestTimeoutMs,
    connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(timeouts.headersTimeoutMs / 4))),
  };
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, port, hostname: host, serverOptions }, () => resolve(server));
    server.once('error', reject);
  });
}

export function closeServer(server: ServerType): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Keep-alive sockets would hold close() open; end them.
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
}
