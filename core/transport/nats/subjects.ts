/**
 * Names on the broker and what a server says of itself there: the
 * subjects that open sessions, discovery and heartbeats, and the
 * {@linkcode Announcement} a server publishes.
 *
 * @module
 */

/** How often a server publishes its heartbeat, in ms. */
export const HEARTBEAT_MS = 5_000;

/** The subject that opens a session with the server `name`. */
export function serverSubject(name: string): string {
  return `rpc.open.server.${name}`;
}

/** The subject that opens a session with a provider of `service`. */
export function serviceSubject(service: string): string {
  return `rpc.open.service.${service}`;
}

/** The queue group of a service's providers. */
export function serviceQueue(service: string): string {
  return `rpc.service.${service}`;
}

/** Subject every server answers with its announcement. */
export const DISCOVER_SUBJECT = "rpc.discover";

/** The subject of `name`'s heartbeat. */
export function heartbeatSubject(name: string): string {
  return `rpc.heartbeat.${name}`;
}

/** What a server says of itself on the broker. */
export interface Announcement {
  /** Its name. */
  server: string;
  /** The services it serves now. */
  services: string[];
  /** Its rpc version. */
  version: string;
  /** Sessions open through the broker now. */
  sessions: number;
  /** When it started (ISO 8601). */
  startedAt: string;
}

const decoder = new TextDecoder();

/** Reads an announcement, or `undefined` when the message is not one. */
export function readAnnouncement(data: Uint8Array): Announcement | undefined {
  try {
    const value = JSON.parse(decoder.decode(data));
    if (typeof value?.server !== "string" || !Array.isArray(value.services)) return undefined;
    return {
      server: value.server,
      services: value.services.filter((name: unknown) => typeof name === "string"),
      version: String(value.version ?? ""),
      sessions: Number(value.sessions ?? 0),
      startedAt: String(value.startedAt ?? ""),
    };
  } catch {
    return undefined;
  }
}
