/**
 * A small line editor for a terminal in raw mode: printable text, backspace
 * and delete, left/right, home/end, up/down through history, tab completion,
 * and the Emacs keys Ctrl-A/E/B/F/P/N/U/K/W/L, Ctrl-C and Ctrl-D.
 *
 * The editor is a pure state machine — {@linkcode decodeKeys} turns terminal
 * input into keys, {@linkcode step} applies one key to an
 * {@linkcode EditorState}, {@linkcode applyCompletion} applies what a
 * completer found, and {@linkcode renderLine} draws the line — so all of it
 * is unit-tested without a terminal. {@linkcode KeyReader} and
 * {@linkcode LineEditor} are the thin I/O around it.
 *
 * @module
 */

import { writeAll } from "./common.ts";

/** Keys the editor understands; anything else is dropped while decoding. */
export type Key =
  | { name: "text"; text: string }
  | {
    name:
      | "enter"
      | "backspace"
      | "delete"
      | "left"
      | "right"
      | "home"
      | "end"
      | "up"
      | "down"
      | "tab"
      | "ctrl-c"
      | "ctrl-d"
      | "ctrl-u"
      | "ctrl-k"
      | "ctrl-w"
      | "ctrl-l";
  };

/** Key names other than text. */
export type KeyName = Exclude<Key["name"], "text">;

const CONTROL_KEYS: Record<string, KeyName> = {
  "\x01": "home", // Ctrl-A
  "\x02": "left", // Ctrl-B
  "\x03": "ctrl-c",
  "\x04": "ctrl-d",
  "\x05": "end", // Ctrl-E
  "\x06": "right", // Ctrl-F
  "\x08": "backspace", // Ctrl-H
  "\x09": "tab",
  "\x0a": "enter",
  "\x0b": "ctrl-k",
  "\x0c": "ctrl-l",
  "\x0d": "enter",
  "\x0e": "down", // Ctrl-N
  "\x10": "up", // Ctrl-P
  "\x15": "ctrl-u",
  "\x17": "ctrl-w",
  "\x7f": "backspace",
};

/** Final bytes of CSI (`ESC [`) and SS3 (`ESC O`) sequences. */
const SEQUENCE_KEYS: Record<string, KeyName> = {
  A: "up",
  B: "down",
  C: "right",
  D: "left",
  H: "home",
  F: "end",
};

/** `ESC [ n ~` sequences. */
const TILDE_KEYS: Record<string, KeyName> = {
  "1": "home",
  "7": "home",
  "4": "end",
  "8": "end",
  "3": "delete",
};

/**
 * Decodes terminal input into keys. An escape sequence cut off at the end of
 * `input` is returned as `rest`, to be put before the next input.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeKeys } from "./line_editor.ts";
 * const { keys } = decodeKeys("ab\x1b[D\r");
 * assert.deepEqual(keys.map((key) => key.name), ["text", "left", "enter"]);
 * ```
 */
export function decodeKeys(input: string): { keys: Key[]; rest: string } {
  const keys: Key[] = [];
  let text = "";
  const flush = () => {
    if (text !== "") keys.push({ name: "text", text });
    text = "";
  };
  let i = 0;
  while (i < input.length) {
    const char = input[i];
    if (char === "\x1b") {
      flush();
      if (i + 1 >= input.length) return { keys, rest: input.slice(i) };
      const kind = input[i + 1];
      if (kind === "[") {
        let j = i + 2;
        while (j < input.length && /[0-9;]/.test(input[j])) j++;
        if (j >= input.length) return { keys, rest: input.slice(i) };
        const final = input[j];
        const params = input.slice(i + 2, j);
        const name = final === "~" ? TILDE_KEYS[params.split(";")[0]] : SEQUENCE_KEYS[final];
        if (name) keys.push({ name });
        i = j + 1;
      } else if (kind === "O") {
        if (i + 2 >= input.length) return { keys, rest: input.slice(i) };
        const name = SEQUENCE_KEYS[input[i + 2]];
        if (name) keys.push({ name });
        i += 3;
      } else {
        i += 2; // Alt-something: not handled.
      }
      continue;
    }
    const control = CONTROL_KEYS[char];
    if (control) {
      flush();
      keys.push({ name: control });
      i += char === "\r" && input[i + 1] === "\n" ? 2 : 1;
      continue;
    }
    if (char < " ") {
      i++; // Another control character: ignored.
      continue;
    }
    text += char;
    i++;
  }
  flush();
  return { keys, rest: "" };
}

/** The line being edited and the history it can recall. */
export interface EditorState {
  /** The text of the line. */
  readonly text: string;
  /** Cursor position, in UTF-16 code units from the start of `text`. */
  readonly cursor: number;
  /** Earlier lines, oldest first. */
  readonly history: readonly string[];
  /** Which history entry is shown; `history.length` is the line being typed. */
  readonly historyIndex: number;
  /** The line being typed, kept while browsing history. */
  readonly draft: string;
}

/** What the caller should do after a key. */
export type EditorAction =
  | { kind: "redraw" }
  | { kind: "submit"; line: string }
  | { kind: "interrupt" }
  | { kind: "eof" }
  | { kind: "complete" }
  | { kind: "clear-screen" }
  | { kind: "bell" };

/** An empty line with the given history. */
export function initialState(history: readonly string[] = []): EditorState {
  return { text: "", cursor: 0, history, historyIndex: history.length, draft: "" };
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** The position one code point left of `index`. */
function previousBoundary(text: string, index: number): number {
  if (index <= 0) return 0;
  return index >= 2 && isLowSurrogate(text.charCodeAt(index - 1)) ? index - 2 : index - 1;
}

/** The position one code point right of `index`. */
function nextBoundary(text: string, index: number): number {
  if (index >= text.length) return text.length;
  return isLowSurrogate(text.charCodeAt(index + 1)) ? index + 2 : index + 1;
}

function edit(state: EditorState, text: string, cursor: number): EditorState {
  return { ...state, text, cursor };
}

function showHistory(state: EditorState, index: number): EditorState {
  const draft = state.historyIndex === state.history.length ? state.text : state.draft;
  const text = index === state.history.length ? draft : state.history[index];
  return { ...state, text, cursor: text.length, historyIndex: index, draft };
}

/**
 * Applies one key. Pure: returns the new state and what to do next.
 *
 * Ctrl-C abandons the line (`interrupt`); Ctrl-D on an empty line is `eof`,
 * elsewhere it deletes the character under the cursor; Enter submits the
 * line (the caller starts the next one with {@linkcode initialState}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initialState, step } from "./line_editor.ts";
 * let state = initialState(["older"]);
 * state = step(state, { name: "text", text: "hi" }).state;
 * state = step(state, { name: "home" }).state;
 * assert.equal(state.cursor, 0);
 * assert.equal(step(state, { name: "up" }).state.text, "older");
 * ```
 */
export function step(state: EditorState, key: Key): { state: EditorState; action: EditorAction } {
  const redraw = (next: EditorState) => ({ state: next, action: { kind: "redraw" } as const });
  const bell = { state, action: { kind: "bell" } as const };
  const { text, cursor } = state;
  switch (key.name) {
    case "text":
      return redraw(
        edit(
          state,
          text.slice(0, cursor) + key.text + text.slice(cursor),
          cursor + key.text.length,
        ),
      );
    case "enter":
      return { state, action: { kind: "submit", line: text } };
    case "backspace": {
      if (cursor === 0) return bell;
      const at = previousBoundary(text, cursor);
      return redraw(edit(state, text.slice(0, at) + text.slice(cursor), at));
    }
    case "delete": {
      if (cursor >= text.length) return bell;
      return redraw(
        edit(state, text.slice(0, cursor) + text.slice(nextBoundary(text, cursor)), cursor),
      );
    }
    case "ctrl-d":
      if (text === "") return { state, action: { kind: "eof" } };
      return step(state, { name: "delete" });
    case "left":
      return cursor === 0 ? bell : redraw(edit(state, text, previousBoundary(text, cursor)));
    case "right":
      return cursor >= text.length ? bell : redraw(edit(state, text, nextBoundary(text, cursor)));
    case "home":
      return redraw(edit(state, text, 0));
    case "end":
      return redraw(edit(state, text, text.length));
    case "up":
      return state.historyIndex === 0 ? bell : redraw(showHistory(state, state.historyIndex - 1));
    case "down":
      return state.historyIndex >= state.history.length
        ? bell
        : redraw(showHistory(state, state.historyIndex + 1));
    case "ctrl-u":
      return redraw(edit(state, text.slice(cursor), 0));
    case "ctrl-k":
      return redraw(edit(state, text.slice(0, cursor), cursor));
    case "ctrl-w": {
      let at = cursor;
      while (at > 0 && text[at - 1] === " ") at--;
      while (at > 0 && text[at - 1] !== " ") at--;
      return redraw(edit(state, text.slice(0, at) + text.slice(cursor), at));
    }
    case "ctrl-c":
      return { state: initialState(state.history), action: { kind: "interrupt" } };
    case "tab":
      return { state, action: { kind: "complete" } };
    case "ctrl-l":
      return { state, action: { kind: "clear-screen" } };
  }
}

/** What a completer found: candidates for `text.slice(start, end)`, and hint lines. */
export interface CompletionResult {
  start: number;
  end: number;
  candidates: readonly string[];
  hint?: readonly string[];
}

/** The longest prefix all the words share. */
export function commonPrefix(words: readonly string[]): string {
  if (words.length === 0) return "";
  let prefix = words[0];
  for (const word of words) {
    while (!word.startsWith(prefix)) prefix = prefix.slice(0, -1);
  }
  return prefix;
}

/** Lays out words in columns that fit `columns` characters. */
export function formatColumns(words: readonly string[], columns: number): string[] {
  if (words.length === 0) return [];
  const width = Math.max(...words.map((word) => word.length)) + 2;
  const perLine = Math.max(1, Math.floor(columns / width));
  const lines: string[] = [];
  for (let i = 0; i < words.length; i += perLine) {
    lines.push(words.slice(i, i + perLine).map((word) => word.padEnd(width)).join("").trimEnd());
  }
  return lines;
}

/**
 * Applies a completion like a shell does: one candidate replaces the word
 * (followed by a space, unless it ends in `.` and more is to come); several
 * are reduced to their common prefix, or listed when that adds nothing.
 * Returns the lines to show below the prompt (candidates or hint) and
 * whether to ring the bell.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { applyCompletion, initialState } from "./line_editor.ts";
 * const state = { ...initialState(), text: "service1.r", cursor: 10 };
 * const result = applyCompletion(state, {
 *   start: 0, end: 10, candidates: ["service1.rpc1", "service1.rpc2"],
 * }, 80);
 * assert.equal(result.state.text, "service1.rpc"); // the common prefix
 * ```
 */
export function applyCompletion(
  state: EditorState,
  completion: CompletionResult,
  columns: number,
): { state: EditorState; show: string[]; bell: boolean } {
  const { start, end, candidates } = completion;
  const hint = completion.hint ? [...completion.hint] : [];
  const replace = (word: string): EditorState => {
    const text = state.text.slice(0, start) + word + state.text.slice(end);
    return { ...state, text, cursor: start + word.length };
  };
  if (candidates.length === 0) return { state, show: hint, bell: hint.length === 0 };
  if (candidates.length === 1) {
    const word = candidates[0];
    const spaced = word.endsWith(".") || state.text[end] === " " ? word : `${word} `;
    const next = replace(spaced);
    return {
      state: state.text[end] === " " ? { ...next, cursor: next.cursor + 1 } : next,
      show: hint,
      bell: false,
    };
  }
  const prefix = commonPrefix(candidates);
  if (prefix.length > end - start) return { state: replace(prefix), show: [], bell: false };
  return { state, show: formatColumns(candidates, columns), bell: false };
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

/** The width of text on screen, ignoring color sequences. */
export function visibleWidth(text: string): number {
  return Array.from(text.replace(ANSI, "")).length;
}

/**
 * The terminal output that redraws the line: carriage return, prompt, the
 * part of the text that fits (scrolled horizontally to keep the cursor in
 * view), erase to end of line, and the cursor put in place.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { initialState, renderLine } from "./line_editor.ts";
 * const out = renderLine("> ", { ...initialState(), text: "abc", cursor: 1 }, 80);
 * assert.equal(out, "\r> abc\x1b[K\r\x1b[3C");
 * ```
 */
export function renderLine(prompt: string, state: EditorState, columns: number): string {
  const promptWidth = visibleWidth(prompt);
  const characters = Array.from(state.text);
  const cursor = Array.from(state.text.slice(0, state.cursor)).length;
  // Keep the last column free, so the terminal never wraps.
  const room = Math.max(1, columns - promptWidth - 1);
  const offset = Math.max(0, cursor - room + 1);
  const visible = characters.slice(offset, offset + room).join("");
  const column = promptWidth + cursor - offset;
  return `\r${prompt}${visible}\x1b[K\r${column > 0 ? `\x1b[${column}C` : ""}`;
}

/** The history after submitting `line`: blank lines and repeats of the last entry are not kept. */
export function addToHistory(history: readonly string[], line: string, max = 1000): string[] {
  if (line.trim() === "" || history[history.length - 1] === line) return [...history];
  return [...history, line].slice(-max);
}

// ---------------------------------------------------------------------------
// Terminal I/O

/**
 * Reads keys from a terminal in raw mode. A handler set with
 * {@linkcode KeyReader.onInterrupt} receives Ctrl-C at once (to cancel a
 * running call); other keys typed meanwhile wait for the next prompt.
 */
export class KeyReader {
  #queue: Key[] = [];
  #waiting: ((key: Key | null) => void) | undefined;
  #ended = false;
  #interrupt: (() => void) | undefined;

  constructor(input: ReadableStream<Uint8Array>) {
    void this.#read(input);
  }

  async #read(input: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    try {
      for await (const chunk of input) {
        const decoded = decodeKeys(rest + decoder.decode(chunk, { stream: true }));
        rest = decoded.rest;
        for (const key of decoded.keys) this.#push(key);
      }
    } catch {
      // Input closed: end as at end of file.
    }
    this.#ended = true;
    this.#waiting?.(null);
    this.#waiting = undefined;
  }

  #push(key: Key): void {
    if (key.name === "ctrl-c" && this.#interrupt) {
      this.#interrupt();
      return;
    }
    if (this.#waiting) {
      const waiting = this.#waiting;
      this.#waiting = undefined;
      waiting(key);
    } else {
      this.#queue.push(key);
    }
  }

  /** Sets (or clears) the receiver of Ctrl-C. */
  onInterrupt(handler: (() => void) | undefined): void {
    this.#interrupt = handler;
  }

  /** The next key; `null` once the input has ended. */
  next(): Promise<Key | null> {
    const key = this.#queue.shift();
    if (key) return Promise.resolve(key);
    if (this.#ended) return Promise.resolve(null);
    return new Promise((resolve) => this.#waiting = resolve);
  }
}

/** Where a {@linkcode LineEditor} reads, writes and completes. */
export interface LineEditorOptions {
  keys: KeyReader;
  /** Writes to the terminal. Default: stdout. */
  write?: (text: string) => void;
  /** The terminal's width. Default: the console's, else 80. */
  columns?: () => number;
  /** Finds completions for the line at the cursor. */
  complete?: (line: string, cursor: number) => CompletionResult;
  /** Earlier lines, oldest first. */
  history?: readonly string[];
}

const encoder = new TextEncoder();

function consoleColumns(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}

/** Reads lines from a terminal in raw mode, drawing the prompt and the line as it is edited. */
export class LineEditor {
  #keys: KeyReader;
  #write: (text: string) => void;
  #columns: () => number;
  #complete: ((line: string, cursor: number) => CompletionResult) | undefined;
  /** Lines entered so far, oldest first (including those loaded at start). */
  history: string[];

  constructor(options: LineEditorOptions) {
    this.#keys = options.keys;
    this.#write = options.write ?? ((text) => writeAll(Deno.stdout, encoder.encode(text)));
    this.#columns = options.columns ?? consoleColumns;
    this.#complete = options.complete;
    this.history = [...(options.history ?? [])];
  }

  /** Reads one line after `prompt`; `null` at Ctrl-D on an empty line or end of input. */
  async readLine(prompt: string): Promise<string | null> {
    let state = initialState(this.history);
    const draw = () => this.#write(renderLine(prompt, state, this.#columns()));
    draw();
    for (;;) {
      const key = await this.#keys.next();
      if (key === null) {
        this.#write("\r\n");
        return null;
      }
      const result = step(state, key);
      state = result.state;
      switch (result.action.kind) {
        case "redraw":
          draw();
          break;
        case "bell":
          this.#write("\x07");
          break;
        case "submit":
          this.#write("\r\n");
          this.history = addToHistory(this.history, result.action.line);
          return result.action.line;
        case "eof":
          this.#write("\r\n");
          return null;
        case "interrupt":
          this.#write("^C\r\n");
          draw();
          break;
        case "clear-screen":
          this.#write("\x1b[H\x1b[2J");
          draw();
          break;
        case "complete": {
          if (!this.#complete) break;
          const applied = applyCompletion(
            state,
            this.#complete(state.text, state.cursor),
            this.#columns(),
          );
          state = applied.state;
          if (applied.bell) this.#write("\x07");
          if (applied.show.length > 0) this.#write(`\r\n${applied.show.join("\r\n")}\r\n`);
          draw();
          break;
        }
      }
    }
  }
}

/** Reads the last `max` lines of a history file; none when it does not exist. */
export async function readHistoryFile(path: string, max = 1000): Promise<string[]> {
  try {
    const text = await Deno.readTextFile(path);
    return text.split("\n").filter((line) => line.trim() !== "").slice(-max);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

/** Appends one line to a history file (created private to the user). */
export async function appendHistoryFile(path: string, line: string): Promise<void> {
  await Deno.writeTextFile(path, `${line}\n`, { append: true, create: true, mode: 0o600 });
}
