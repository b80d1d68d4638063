/**
 * Timestamped logging with injectable sinks. Records are buffered and written
 * in batches, so logging every call (as the course requires) never blocks the
 * event loop on a slow terminal or disk.
 *
 * @module
 */

/** Severity of a record. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVEL_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Names of the levels, lowest first. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** One log record. `event` is a stable machine-readable name. */
export interface LogRecord {
  time: string;
  level: LogLevel;
  event: string;
  msg: string;
  [field: string]: unknown;
}

/** Where records go. */
export interface LogSink {
  write(record: LogRecord): void;
  flush(): Promise<void>;
}

/**
 * The server's log. Events used by the server: `listen`, `connect` (every
 * connection attempt), `client` (an identified client and its address),
 * `unauthorized`, `call` (a successful call), `exception`, `protocol`,
 * `disconnect`, `install`.
 */
export class Logger {
  level: LogLevel;
  #sinks: LogSink[];
  #clock: (() => Date) | undefined;
  /** The last timestamp formatted, reused for every record in the same millisecond. */
  #stampMs = -1;
  #stamp = "";

  constructor(sinks: LogSink[], options: { level?: LogLevel; clock?: () => Date } = {}) {
    this.#sinks = sinks;
    this.level = options.level ?? "info";
    this.#clock = options.clock;
  }

  /** Whether records of `level` are kept. */
  enabled(level: LogLevel): boolean {
    return LEVEL_ORDER[level] >= LEVEL_ORDER[this.level];
  }

  log(level: LogLevel, event: string, msg: string, fields?: Record<string, unknown>): void {
    if (LEVEL_ORDER[level] < LEVEL_ORDER[this.level]) return;
    // One object of one shape for every record; the fields follow in their own order.
    // The fields follow in their own order (own properties only); spreading a literal of a
    // known shape is several times cheaper than adding its properties one by one.
    const record: LogRecord = fields
      ? { time: this.#now(), level, event, msg, ...fields }
      : { time: this.#now(), level, event, msg };
    const sinks = this.#sinks;
    for (let i = 0; i < sinks.length; i++) sinks[i].write(record);
  }

  /**
   * The time as ISO text. Formatting a date costs about as much as the rest
   * of a log record, and a busy server logs many records per millisecond.
   */
  #now(): string {
    if (this.#clock) return this.#clock().toISOString();
    const ms = Date.now();
    if (ms !== this.#stampMs) {
      this.#stampMs = ms;
      this.#stamp = new Date(ms).toISOString();
    }
    return this.#stamp;
  }

  debug(event: string, msg: string, fields?: Record<string, unknown>): void {
    this.log("debug", event, msg, fields);
  }
  info(event: string, msg: string, fields?: Record<string, unknown>): void {
    this.log("info", event, msg, fields);
  }
  warn(event: string, msg: string, fields?: Record<string, unknown>): void {
    this.log("warn", event, msg, fields);
  }
  error(event: string, msg: string, fields?: Record<string, unknown>): void {
    this.log("error", event, msg, fields);
  }

  /** Writes out everything buffered. */
  async flush(): Promise<void> {
    await Promise.all(this.#sinks.map((sink) => sink.flush()));
  }
}

/** A logger that drops everything, for library use without logs. */
export function silentLogger(): Logger {
  return new Logger([]);
}

/** The byte writer a buffered sink writes to (a file, stderr). */
export interface ByteWriter {
  write(data: Uint8Array): Promise<number>;
}

const encoder = new TextEncoder();

/**
 * Writes are at least this far apart while lines keep coming. One write
 * costs about as much CPU as serving dozens of calls (tens of µs on a file
 * or a pipe), so a busy server writes its call lines in batches of many
 * ticks rather than one write per tick; a quiet one writes a line at once.
 */
const MIN_WRITE_INTERVAL_MS = 10;

/**
 * Buffers formatted lines and writes them in one call per batch: the first
 * line after a quiet spell at the end of its tick, and while lines keep
 * coming, one write per `minIntervalMs` at most. While a write is under way,
 * new lines wait in memory; past `maxBufferedLines` the oldest waiting lines
 * are dropped and the drop is counted in the next batch.
 */
export class BufferedSink implements LogSink {
  #lines: string[] = [];
  #writing: Promise<void> | undefined;
  #dropped = 0;
  /** When the last write began (`performance.now()`). */
  #lastWrite = -Infinity;

  constructor(
    readonly writer: ByteWriter,
    readonly format: (record: LogRecord) => string,
    readonly maxBufferedLines = 100_000,
    readonly minIntervalMs = MIN_WRITE_INTERVAL_MS,
  ) {}

  write(record: LogRecord): void {
    if (this.#lines.length >= this.maxBufferedLines) {
      this.#lines.shift();
      this.#dropped++;
    }
    this.#lines.push(this.format(record));
    this.#writing ??= new Promise<void>((resolve) => setTimeout(resolve, 0)).then(() =>
      this.#drain()
    );
  }

  async #drain(): Promise<void> {
    try {
      while (this.#lines.length > 0) {
        const wait = this.#lastWrite + this.minIntervalMs - performance.now();
        if (wait > 0) await new Promise<void>((resolve) => setTimeout(resolve, wait));
        this.#lastWrite = performance.now();
        let text = this.#lines.join("");
        this.#lines = [];
        if (this.#dropped > 0) {
          text += `log: ${this.#dropped} records dropped while output was slow\n`;
          this.#dropped = 0;
        }
        const data = encoder.encode(text);
        let offset = 0;
        while (offset < data.length) offset += await this.writer.write(data.subarray(offset));
      }
    } catch {
      // A log that cannot be written must not take the server down.
      this.#lines = [];
    } finally {
      this.#writing = undefined;
    }
  }

  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
  }
}

const bigintAsText = (_key: string, value: unknown) =>
  typeof value === "bigint" ? value.toString() : value;

/** Formats a record as one JSON line (a bigint as its decimal text). */
export function formatJsonLine(record: LogRecord): string {
  try {
    // Without a replacer JSON.stringify takes its fast path; only a bigint makes it throw.
    return JSON.stringify(record) + "\n";
  } catch {
    return JSON.stringify(record, bigintAsText) + "\n";
  }
}

// deno-lint-ignore no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/g;
// deno-lint-ignore no-control-regex
const HAS_CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/**
 * Escapes control characters, so that a message carrying text from a client
 * (a service name, an error message) cannot start a forged log line.
 */
export function escapeControl(text: string): string {
  // Most messages hold none: one scan, and the text itself comes back.
  if (!HAS_CONTROL_CHARACTER.test(text)) return text;
  return text.replace(
    CONTROL_CHARACTERS,
    (char) =>
      char === "\n"
        ? "\\n"
        : char === "\r"
        ? "\\r"
        : char === "\t"
        ? "\\t"
        : `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The level as a text line shows it, padded to one width. */
const LEVEL_LABELS: Record<string, string> = {
  debug: "DEBUG",
  info: "INFO ",
  warn: "WARN ",
  error: "ERROR",
};

/** The start of the last text line formatted (`TIME LEVEL `), reused while time and level hold. */
let lastTime = "";
let lastLevel = "";
let lastPrefix = "";

/** Formats a record as one readable line: time, level, message (control characters escaped). */
export function formatTextLine(record: LogRecord): string {
  const { time, level } = record;
  if (time !== lastTime || level !== lastLevel) {
    lastTime = time;
    lastLevel = level;
    lastPrefix = `${time} ${LEVEL_LABELS[level] ?? String(level).toUpperCase().padEnd(5)} `;
  }
  return lastPrefix + escapeControl(record.msg) + "\n";
}

/** A sink that keeps records in memory, for tests. */
export class MemorySink implements LogSink {
  readonly records: LogRecord[] = [];
  write(record: LogRecord): void {
    this.records.push(record);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}
