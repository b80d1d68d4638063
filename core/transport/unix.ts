/**
 * Unix domain sockets. Who may connect is decided by the file system: a
 * client needs write permission on the socket file (and search permission
 * on its directories). The listener sets the file's mode once it is bound
 * (default 0600: only the server's user); a group that should connect gets
 * 0660 and the file's group, or a directory only it can enter.
 *
 * Every connection's peer address is the socket itself (`unix:/path`): the
 * kernel gives a client no address of its own, so a unix client has no IP,
 * and identification by IP never matches it.
 *
 * @module
 */

import { codeOf, ErrorKind, RpcError } from "../errors.ts";
import { rethrowTransport } from "./errors.ts";
import { Acceptor, connectError } from "./socket.ts";
import type { Address, Connection, Listener, ListenEvents } from "./mod.ts";

/** Options of {@linkcode listenUnix}. */
export interface UnixListenOptions {
  /** The socket file's permission bits. Default 0o600. */
  mode?: number;
}

class UnixConnection implements Connection {
  constructor(readonly conn: Deno.UnixConn, readonly remote: Address) {}
  read(buffer: Uint8Array): Promise<number | null> {
    return this.conn.read(buffer).catch(rethrowTransport);
  }
  write(data: Uint8Array): Promise<number> {
    return this.conn.write(data).catch(rethrowTransport);
  }
  close(): void {
    this.conn.close();
  }
  closeWrite(): Promise<void> {
    return this.conn.closeWrite().catch(rethrowTransport);
  }
}

function unixAddress(path: string): Address {
  return { hostname: "unix", port: 0, path };
}

/**
 * Listens on the unix socket `path`. A socket file left there by a server
 * that is gone is replaced; one a live server listens on is not.
 *
 * @throws {RpcError} `Unavailable` when a server listens on `path` already,
 * or when `path` exists and is not a socket.
 */
export async function listenUnix(
  path: string,
  options: UnixListenOptions = {},
  events: ListenEvents = {},
): Promise<Listener> {
  const where = `unix:${path}`;
  const existing = await Deno.lstat(path).catch(() => undefined);
  if (existing) {
    if (!existing.isSocket) {
      throw new RpcError(
        ErrorKind.Unavailable,
        `Cannot listen on ${where}: the file exists and is not a socket`,
      );
    }
    const live = await Deno.connect({ transport: "unix", path }).then(
      (conn) => (conn.close(), true),
      () => false,
    );
    if (live) {
      throw new RpcError(
        ErrorKind.Unavailable,
        `Cannot listen on ${where}: a server listens there`,
      );
    }
    await Deno.remove(path);
  }
  let listener: Deno.UnixListener;
  try {
    listener = Deno.listen({ transport: "unix", path });
  } catch (error) {
    throw new RpcError(
      ErrorKind.Unavailable,
      `Cannot listen on ${where}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  try {
    Deno.chmodSync(path, options.mode ?? 0o600);
  } catch (error) {
    listener.close();
    throw new RpcError(
      ErrorKind.Unavailable,
      `Cannot set the mode of ${where}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  const acceptor = new Acceptor<Deno.UnixConn>(listener, events);
  const remote = unixAddress(path);
  let closed = false;
  return {
    address: remote,
    async accept() {
      const conn = await acceptor.next();
      return conn ? new UnixConnection(conn, remote) : null;
    },
    close() {
      if (closed) return;
      closed = true;
      acceptor.close();
      try {
        Deno.removeSync(path);
      } catch {
        // Already gone.
      }
    },
  };
}

/** Connects to the unix socket `path`. */
export async function connectUnix(path: string, signal?: AbortSignal): Promise<Connection> {
  const where = `unix:${path}`;
  try {
    signal?.throwIfAborted();
    const aborted = new Promise<never>((_, reject) => {
      signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    const opening = Deno.connect({ transport: "unix", path });
    const conn = await Promise.race([opening, aborted]).catch((error) => {
      opening.then((conn) => conn.close(), () => {});
      throw error;
    });
    return new UnixConnection(conn, unixAddress(path));
  } catch (error) {
    const { code } = codeOf(error);
    if (code === "ENOENT") {
      throw new RpcError(ErrorKind.Unavailable, `Cannot connect to ${where}: no such socket`, {
        cause: error,
        code,
      });
    }
    if (code === "EACCES" || code === "EPERM") {
      throw new RpcError(
        ErrorKind.Unauthorized,
        `Cannot connect to ${where}: permission denied by the socket file's mode`,
        { cause: error, code },
      );
    }
    throw connectError(where, error, signal);
  }
}
