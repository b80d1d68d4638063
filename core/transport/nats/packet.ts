/**
 * The messages of a session on the broker: every one starts with a kind
 * byte ({@linkcode Kind}) and a 32-bit sequence number ({@linkcode packet}),
 * then its body; opens and accepts carry JSON ({@linkcode readJson}).
 *
 * @module
 */

/** Bytes of a message's own header: kind (1) and sequence number (4). */
export const HEADER_BYTES = 5;

/** Room left in a chunk below `max_payload` for the broker's protocol overhead. */
export const PAYLOAD_SLACK = 64;

/** What a message is, its first byte. */
export const enum Kind {
  Open = 1,
  Accept = 2,
  Data = 3,
  /** The sender will write no more (half close). */
  End = 4,
  /** The sender closed the session. */
  Close = 5,
  /** The reader's total bytes read so far (a float64): the writer may send up to a window past it. */
  Credit = 6,
  /** Are you there? (sent after {@linkcode PROBE_IDLE_MS} of silence) */
  Ping = 7,
  /** Yes. */
  Pong = 8,
}

/** Builds a message: kind, sequence number, then `body`. */
export function packet(kind: Kind, seq: number, body?: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + (body?.length ?? 0));
  out[0] = kind;
  new DataView(out.buffer).setUint32(1, seq >>> 0);
  if (body) out.set(body, HEADER_BYTES);
  return out;
}

const decoder = new TextDecoder();

/** Parses JSON, or `undefined`. */
export function readJson(data: Uint8Array): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(decoder.decode(data));
    return typeof value === "object" && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}
