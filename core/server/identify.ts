/**
 * The identify stage: who is on a connection, decided once, before its
 * first call. The server answers `HELLO` (protocol version, its name, a
 * nonce) and checks the client's claim against the client table: a verified
 * client certificate names the client outright; a claimed name must come
 * from the IP the table gives it; a client with a secret must prove it with
 * `AUTH`, a challenge-response over both nonces (see `core/wire/auth.ts`),
 * so the secret never travels. `AUTH` may also prove the admin token. A
 * connection without `HELLO` is identified by its first `RPC-REQ` or `LIST`.
 * A refused claim is logged and audited as unauthorized, answered, and the
 * connection closed; repeated refusals are summarised by the
 * {@linkcode RefusalLog}.
 *
 * @module
 */

import type { AdminAuth } from "./admin.ts";
import {
  newNonce,
  NONCE_CHARS,
  proofKeyFromHash,
  proofMatches,
  type ProofRole,
} from "../wire/auth.ts";
import { ErrorKind, RpcError } from "../errors.ts";
import type { Logger } from "../log.ts";
import {
  type AuthRequest,
  exceptionMessage,
  type HelloRequest,
  type Message,
  PROTOCOL_VERSIONS,
} from "../wire/message.ts";
import { VERSION } from "../version.ts";
import type { ConnectionGate } from "./gate.ts";
import type { RefusalLog } from "./refusals.ts";
import {
  describe,
  type KnownClient,
  normalizeIp,
  sendException,
  type ServerStats,
  type Session,
} from "./session.ts";

/** Options of {@linkcode Identification}. */
export interface IdentificationOptions {
  /** This server's name, which `HELLO` replies give and `AUTH` proofs sign. */
  name: string;
  /** Known clients, by name. */
  clients: ReadonlyMap<string, KnownClient>;
  /** The admin token a connection can prove with `AUTH`. */
  adminAuth?: AdminAuth;
  logger: Logger;
  /** Receives a record per refused claim. */
  audit?: Logger;
  refusals: RefusalLog;
  /** Its `refused` counter counts the claims refused. */
  stats: ServerStats;
  /** Refuses what a connection in a slot kept for admins sends before proving the admin token. */
  gate: ConnectionGate;
}

/** Identifies the client on each connection; see the module documentation. */
export class Identification {
  #name: string;
  #clients: ReadonlyMap<string, KnownClient>;
  #adminAuth: AdminAuth | undefined;
  #logger: Logger;
  #audit: Logger | undefined;
  #refusals: RefusalLog;
  #stats: ServerStats;
  #gate: ConnectionGate;

  constructor(options: IdentificationOptions) {
    this.#name = options.name;
    this.#clients = options.clients;
    this.#adminAuth = options.adminAuth;
    this.#logger = options.logger;
    this.#audit = options.audit;
    this.#refusals = options.refusals;
    this.#stats = options.stats;
    this.#gate = options.gate;
  }

  /** Replaces the table of known clients; sessions identified already keep their name. */
  set clients(clients: ReadonlyMap<string, KnownClient>) {
    this.#clients = clients;
  }

  /**
   * Whether a message other than `HELLO` and `AUTH` may be handled: not while
   * the claimed client still owes the proof of its secret, nor on a slot kept
   * for admins before the admin token is proven. Refuses and closes otherwise.
   */
  mayProceed(session: Session, message: Message): boolean {
    if (session.awaitingProof) {
      const name = session.awaitingProof.name;
      return this.#refuse(
        session,
        message.serial,
        ErrorKind.Unauthorized,
        `Client ${name} must prove its secret with AUTH before ${message.type}`,
        "secret",
        name,
      );
    }
    if (session.reserved !== undefined && !session.admin) {
      return this.#gate.refuseReserved(session, message.serial, message.type);
    }
    return true;
  }

  hello(session: Session, serial: number, hello: HelloRequest): void {
    const offered = Array.isArray(hello.versions) ? hello.versions : [];
    const common = PROTOCOL_VERSIONS.filter((version) => offered.includes(version));
    if (common.length === 0) {
      const error = new RpcError(
        ErrorKind.UnsupportedVersion,
        `Server speaks protocol versions ${PROTOCOL_VERSIONS.join(", ")}; client offered ${
          offered.join(", ") || "none"
        }`,
      );
      this.#logger.warn("protocol", `${describe(session)}: ${error.message}`, {
        remote: session.remote,
      });
      sendException(session.channel, serial, error);
      void session.channel.end();
      return;
    }
    if (session.identified || session.nonce !== undefined) {
      session.channel.send(exceptionMessage(
        serial,
        new RpcError(ErrorKind.MalformedFrame, "HELLO may be sent only once, first"),
      ));
      return;
    }
    if (session.reserved !== undefined && hello.admin !== true) {
      this.#gate.refuseReserved(session, serial, "a HELLO without admin");
      return;
    }
    const claimed = typeof hello.client === "string" ? hello.client : undefined;
    session.claimed = claimed ?? "";
    session.nonce = newNonce();
    if (!this.identify(session, claimed, serial, true)) return;
    session.channel.send({
      type: "HELLO",
      serial,
      value: {
        version: Math.max(...common),
        server: this.#name,
        software: `rpc/${VERSION}`,
        nonce: session.nonce,
        ...(session.awaitingProof ? { "auth-required": true } : {}),
      },
    });
  }

  /**
   * `AUTH`: the client proves its secret and/or the admin token over the
   * nonce of this server's `HELLO` (see `core/wire/auth.ts`). A wrong or missing
   * proof is refused, logged as unauthorized, and the connection closed.
   */
  auth(session: Session, serial: number, request: AuthRequest): void {
    if (session.nonce === undefined) {
      sendException(
        session.channel,
        serial,
        new RpcError(ErrorKind.MalformedFrame, "AUTH must follow the server's HELLO reply"),
      );
      return;
    }
    if (session.authenticated) {
      sendException(
        session.channel,
        serial,
        new RpcError(ErrorKind.MalformedFrame, "AUTH may be sent only once"),
      );
      return;
    }
    session.authenticated = true;
    const clientNonce = request.nonce;
    if (
      typeof clientNonce !== "string" || clientNonce.length < NONCE_CHARS.min ||
      clientNonce.length > NONCE_CHARS.max
    ) {
      return void this.#refuse(
        session,
        serial,
        ErrorKind.Unauthorized,
        `AUTH needs a nonce of ${NONCE_CHARS.min} to ${NONCE_CHARS.max} characters`,
        "nonce",
      );
    }
    const proves = (role: ProofRole, proof: unknown, hashHex: string) =>
      proofMatches(proof, proofKeyFromHash(hashHex), {
        role,
        client: session.claimed,
        server: this.#name,
        serverNonce: session.nonce!,
        clientNonce,
      });
    const owed = session.awaitingProof;
    if (owed) {
      if (!proves("client", request.proof, owed.secretHash!)) {
        return void this.#refuse(
          session,
          serial,
          ErrorKind.Unauthorized,
          request.proof === undefined
            ? `Client ${owed.name} must present its secret`
            : `Wrong secret for client ${owed.name}`,
          "secret",
          owed.name,
        );
      }
      session.awaitingProof = undefined;
      session.client = owed.name;
      this.#logConnected(session);
    }
    if (request["admin-proof"] !== undefined) {
      const auth = this.#adminAuth ?? {};
      if (!auth.insecure) {
        if (!auth.adminTokenHash) {
          return void this.#refuse(
            session,
            serial,
            ErrorKind.Unauthorized,
            `This server accepts no admin requests: it was started without an admin token${
              auth.tokenSource ? ` (${auth.tokenSource})` : ""
            }`,
            "admin",
          );
        }
        if (!proves("admin", request["admin-proof"], auth.adminTokenHash)) {
          return void this.#refuse(
            session,
            serial,
            ErrorKind.Unauthorized,
            "Wrong or missing admin token",
            "admin",
          );
        }
      }
      session.admin = true;
      this.#logger.info(
        "admin",
        `${describe(session)} proved the admin token${
          session.reserved === undefined ? "" : " in a slot kept for admins"
        }`,
        { remote: session.remote, client: session.client },
      );
    }
    session.channel.send({
      type: "AUTH",
      serial,
      value: { client: session.client ?? null, admin: session.admin },
    });
  }

  /** Refuses a connection's claim: logged and audited as unauthorized, answered, closed. Returns false. */
  #refuse(
    session: Session,
    serial: number,
    kind: ErrorKind,
    message: string,
    reason: string,
    client?: string,
  ): false {
    this.#stats.refused++;
    session.refused = true;
    const fields = { remote: session.remote, client: client ?? session.client, reason };
    // Grouped by a name from the client table, never one the client made up.
    const who = client ?? session.client;
    const group = who !== undefined && this.#clients.has(who) ? `${reason} ${who}` : reason;
    if (this.#refusals.refused(session.remoteIp, group, true)) {
      this.#logger.warn("unauthorized", `${session.remote}: ${message}`, fields);
      this.#audit?.warn("unauthorized", message, fields);
    }
    sendException(session.channel, serial, new RpcError(kind, message));
    void session.channel.end();
    return false;
  }

  #logConnected(session: Session): void {
    if (session.client === undefined && this.#refusals.quiet(session.remoteIp)) return;
    this.#logger.info("client", `${describe(session)} connected`, {
      remote: session.remote,
      client: session.client,
    });
  }

  /**
   * Decides who is on a connection. A verified client certificate names the
   * client outright. Otherwise the connection's claim is checked: it must
   * come from the IP init.yaml gives that client, and a client with a secret
   * must prove it with `AUTH` (`viaHello`), which a connection without
   * `HELLO` cannot. With no claim, the connection is the one client (without
   * a secret) whose IP it comes from, or anonymous. A refused claim is logged
   * as unauthorized and the connection closed.
   */
  identify(
    session: Session,
    claimed: string | undefined,
    serial: number,
    viaHello: boolean,
  ): boolean {
    session.identified = true;
    const certified = session.conn.peerName;
    const refuse = (kind: ErrorKind, message: string, reason: string) =>
      this.#refuse(session, serial, kind, message, reason, claimed ?? certified);
    let name = claimed;
    if (certified !== undefined) {
      if (claimed !== undefined && claimed !== certified) {
        return refuse(
          ErrorKind.Unauthorized,
          `Client certificate names ${certified}, not ${claimed}`,
          "certificate",
        );
      }
      name = certified;
    }
    if (name !== undefined) {
      const known = this.#clients.get(name);
      if (known?.ip !== undefined && normalizeIp(known.ip) !== session.remoteIp) {
        return refuse(
          ErrorKind.ClientNotRegistered,
          `Client ${name} may not connect from ${session.remoteIp}`,
          "address",
        );
      }
      if (known?.secretHash && certified === undefined) {
        if (!viaHello) {
          return refuse(
            ErrorKind.Unauthorized,
            `Client ${name} must prove its secret: send HELLO, then AUTH`,
            "secret",
          );
        }
        session.awaitingProof = known;
        return true;
      }
      session.client = name;
    } else {
      const byAddress = [...this.#clients.values()].filter((client) =>
        client.ip !== undefined && !client.secretHash && normalizeIp(client.ip) === session.remoteIp
      );
      if (byAddress.length === 1) session.client = byAddress[0].name;
    }
    this.#logConnected(session);
    return true;
  }
}
