import assert from "node:assert/strict";
import {
  addToHistory,
  appendHistoryFile,
  applyCompletion,
  commonPrefix,
  decodeKeys,
  type EditorState,
  formatColumns,
  initialState,
  type Key,
  KeyReader,
  LineEditor,
  readHistoryFile,
  renderLine,
  step,
  visibleWidth,
} from "./line_editor.ts";

/** Applies keys typed as terminal input, returning the last state and every action. */
function type(input: string, state: EditorState = initialState()) {
  const actions: string[] = [];
  for (const key of decodeKeys(input).keys) {
    const result = step(state, key);
    state = result.state;
    actions.push(result.action.kind);
  }
  return { state, actions };
}

const names = (input: string) => decodeKeys(input).keys.map((key) => key.name);

Deno.test("decodeKeys() groups printable characters into one text key", () => {
  assert.deepEqual(decodeKeys("hello wörld"), {
    keys: [{ name: "text", text: "hello wörld" }],
    rest: "",
  });
});

Deno.test("decodeKeys() reads arrows, home, end and delete in their common encodings", () => {
  assert.deepEqual(names("\x1b[A\x1b[B\x1b[C\x1b[D"), ["up", "down", "right", "left"]);
  assert.deepEqual(names("\x1bOA\x1bOH\x1bOF"), ["up", "home", "end"]);
  assert.deepEqual(names("\x1b[H\x1b[F\x1b[1~\x1b[4~\x1b[7~\x1b[8~"), [
    "home",
    "end",
    "home",
    "end",
    "home",
    "end",
  ]);
  assert.deepEqual(names("\x1b[3~"), ["delete"]);
});

Deno.test("decodeKeys() reads control keys", () => {
  assert.deepEqual(
    names("\x01\x02\x03\x04\x05\x06\x08\x09\x0b\x0c\x0e\x10\x15\x17\x7f"),
    [
      "home",
      "left",
      "ctrl-c",
      "ctrl-d",
      "end",
      "right",
      "backspace",
      "tab",
      "ctrl-k",
      "ctrl-l",
      "down",
      "up",
      "ctrl-u",
      "ctrl-w",
      "backspace",
    ],
  );
});

Deno.test("decodeKeys() reads CR, LF and CRLF each as one enter", () => {
  assert.deepEqual(names("a\rb\nc\r\n"), ["text", "enter", "text", "enter", "text", "enter"]);
});

Deno.test("decodeKeys() keeps an escape sequence cut off at the end for the next input", () => {
  assert.deepEqual(decodeKeys("ab\x1b["), { keys: [{ name: "text", text: "ab" }], rest: "\x1b[" });
  assert.deepEqual(decodeKeys("\x1b"), { keys: [], rest: "\x1b" });
  assert.deepEqual(decodeKeys("\x1bO"), { keys: [], rest: "\x1bO" });
  assert.deepEqual(names("\x1b[" + "A"), ["up"]);
});

Deno.test("decodeKeys() drops unknown sequences, Alt keys and other control characters", () => {
  assert.deepEqual(names("\x1b[15~\x1bx\x00\x1az"), ["text"]);
});

Deno.test("decodeKeys() reads an arrow with modifiers as the arrow", () => {
  assert.deepEqual(names("\x1b[1;5C"), ["right"]);
});

Deno.test("step() inserts text at the cursor", () => {
  const { state } = type("helo\x1b[D" + "l");
  assert.equal(state.text, "hello");
  assert.equal(state.cursor, 4);
});

Deno.test("step() moves with left, right, home (Ctrl-A) and end (Ctrl-E)", () => {
  let { state } = type("abc\x01");
  assert.equal(state.cursor, 0);
  state = type("\x05", state).state;
  assert.equal(state.cursor, 3);
  state = type("\x1b[D\x1b[D", state).state;
  assert.equal(state.cursor, 1);
  state = type("\x1b[C", state).state;
  assert.equal(state.cursor, 2);
});

Deno.test("step() rings the bell at either end of the line", () => {
  assert.deepEqual(type("\x1b[D").actions, ["bell"]);
  assert.deepEqual(type("a\x1b[C").actions, ["redraw", "bell"]);
  assert.deepEqual(type("\x7f").actions, ["bell"]);
});

Deno.test("step() deletes with backspace and delete", () => {
  let { state } = type("abcd\x1b[D\x7f");
  assert.equal(state.text, "abd");
  assert.equal(state.cursor, 2);
  state = type("\x1b[3~", state).state;
  assert.equal(state.text, "ab");
  assert.equal(state.cursor, 2);
});

Deno.test("step() moves and deletes whole code points outside the BMP", () => {
  let { state } = type("a😀b\x1b[D\x1b[D");
  assert.equal(state.cursor, 1);
  state = type("\x1b[C", state).state;
  assert.equal(state.cursor, 3);
  state = type("\x7f", state).state;
  assert.equal(state.text, "ab");
});

Deno.test("step() kills before the cursor (Ctrl-U), after it (Ctrl-K) and a word (Ctrl-W)", () => {
  assert.equal(type("hello world\x1b[D\x1b[D\x15").state.text, "ld");
  assert.equal(type("hello world\x01\x1b[C\x0b").state.text, "h");
  const word = type("service1.rpc1 42 abc\x17").state;
  assert.equal(word.text, "service1.rpc1 42 ");
  assert.equal(type("a b   \x17", initialState()).state.text, "a ");
});

Deno.test("step() submits the line on enter", () => {
  const { actions } = type("s.r 1\r");
  assert.equal(actions.at(-1), "submit");
  const result = step(type("s.r 1").state, { name: "enter" });
  assert.deepEqual(result.action, { kind: "submit", line: "s.r 1" });
});

Deno.test("step() Ctrl-C abandons the line, with or without text", () => {
  const typed = step(type("abc").state, { name: "ctrl-c" });
  assert.deepEqual(typed.action, { kind: "interrupt" });
  assert.equal(typed.state.text, "");
  assert.equal(typed.state.cursor, 0);
  assert.deepEqual(step(initialState(), { name: "ctrl-c" }).action, { kind: "interrupt" });
});

Deno.test("step() Ctrl-D is end of file on an empty line and delete elsewhere", () => {
  assert.deepEqual(step(initialState(), { name: "ctrl-d" }).action, { kind: "eof" });
  const { state, actions } = type("ab\x01\x04");
  assert.equal(state.text, "b");
  assert.equal(actions.at(-1), "redraw");
});

Deno.test("step() asks for completion on tab and for a clear screen on Ctrl-L", () => {
  assert.deepEqual(type("s\t").actions, ["redraw", "complete"]);
  assert.deepEqual(type("\x0c").actions, ["clear-screen"]);
});

Deno.test("step() walks history with up and down, keeping the line being typed", () => {
  let state = initialState(["first", "second"]);
  state = type("draft", state).state;
  state = type("\x1b[A", state).state;
  assert.equal(state.text, "second");
  assert.equal(state.cursor, 6);
  state = type("\x1b[A", state).state;
  assert.equal(state.text, "first");
  assert.deepEqual(type("\x1b[A", state).actions, ["bell"]);
  state = type("\x1b[B\x1b[B", state).state;
  assert.equal(state.text, "draft");
  assert.deepEqual(type("\x1b[B", state).actions, ["bell"]);
});

Deno.test("step() edits a recalled line without changing the history", () => {
  let state = initialState(["old"]);
  state = type("\x1b[A!", state).state;
  assert.equal(state.text, "old!");
  assert.deepEqual(state.history, ["old"]);
});

Deno.test("step() Ctrl-P and Ctrl-N also walk history", () => {
  const state = type("\x10", initialState(["x"])).state;
  assert.equal(state.text, "x");
  assert.equal(type("\x0e", state).state.text, "");
});

Deno.test("commonPrefix() finds the prefix all words share", () => {
  assert.equal(commonPrefix(["service1.rpc1", "service1.rpc2"]), "service1.rpc");
  assert.equal(commonPrefix(["a", "b"]), "");
  assert.equal(commonPrefix([]), "");
});

Deno.test("applyCompletion() replaces the word with the one candidate and adds a space", () => {
  const state = { ...initialState(), text: "service1.rp", cursor: 11 };
  const result = applyCompletion(state, { start: 0, end: 11, candidates: ["service1.rpc1"] }, 80);
  assert.equal(result.state.text, "service1.rpc1 ");
  assert.equal(result.state.cursor, 14);
  assert.deepEqual(result.show, []);
});

Deno.test("applyCompletion() adds no space after a service name ending in a dot", () => {
  const state = { ...initialState(), text: "serv", cursor: 4 };
  const result = applyCompletion(state, { start: 0, end: 4, candidates: ["service1."] }, 80);
  assert.equal(result.state.text, "service1.");
});

Deno.test("applyCompletion() inserts the common prefix of several candidates", () => {
  const state = { ...initialState(), text: "service1.r", cursor: 10 };
  const result = applyCompletion(state, {
    start: 0,
    end: 10,
    candidates: ["service1.rpc1", "service1.rpc2"],
  }, 80);
  assert.equal(result.state.text, "service1.rpc");
  assert.deepEqual(result.show, []);
});

Deno.test("applyCompletion() lists the candidates when the prefix adds nothing", () => {
  const state = { ...initialState(), text: "service1.rpc", cursor: 12 };
  const result = applyCompletion(state, {
    start: 0,
    end: 12,
    candidates: ["service1.rpc1", "service1.rpc2"],
  }, 80);
  assert.equal(result.state, state);
  assert.deepEqual(result.show, ["service1.rpc1  service1.rpc2"]);
});

Deno.test("applyCompletion() shows the hint, or rings the bell when there is nothing", () => {
  const state = { ...initialState(), text: "s.r ", cursor: 4 };
  const hinted = applyCompletion(state, {
    start: 4,
    end: 4,
    candidates: [],
    hint: ["s.r(int) -> str"],
  }, 80);
  assert.deepEqual(hinted.show, ["s.r(int) -> str"]);
  assert.equal(hinted.bell, false);
  const nothing = applyCompletion(state, { start: 4, end: 4, candidates: [] }, 80);
  assert.equal(nothing.bell, true);
});

Deno.test("applyCompletion() completes a word in the middle of the line", () => {
  const state = { ...initialState(), text: ".use s x", cursor: 6 };
  const result = applyCompletion(state, { start: 5, end: 6, candidates: ["s2"] }, 80);
  assert.equal(result.state.text, ".use s2 x");
  assert.equal(result.state.cursor, 8);
});

Deno.test("formatColumns() lays words out in columns that fit", () => {
  assert.deepEqual(formatColumns(["aa", "bb", "cc"], 8), ["aa  bb", "cc"]);
  assert.deepEqual(formatColumns(["long-word"], 4), ["long-word"]);
});

Deno.test("renderLine() draws prompt and text and puts the cursor in place", () => {
  const state = { ...initialState(), text: "abc", cursor: 3 };
  assert.equal(renderLine("s1 c1> ", state, 80), "\rs1 c1> abc\x1b[K\r\x1b[10C");
  assert.equal(renderLine("", { ...state, cursor: 0 }, 80), "\rabc\x1b[K\r");
});

Deno.test("renderLine() ignores color sequences when measuring the prompt", () => {
  const state = { ...initialState(), text: "x", cursor: 1 };
  assert.equal(renderLine("\x1b[1m> \x1b[0m", state, 80), "\r\x1b[1m> \x1b[0mx\x1b[K\r\x1b[3C");
  assert.equal(visibleWidth("\x1b[31mab\x1b[0m"), 2);
});

Deno.test("renderLine() scrolls a long line to keep the cursor in view", () => {
  const text = "0123456789abcdefghij";
  const out = renderLine("> ", { ...initialState(), text, cursor: text.length }, 12);
  // 12 columns: 2 for the prompt, 9 for text, the last one kept free.
  assert.equal(out, "\r> cdefghij\x1b[K\r\x1b[10C");
});

Deno.test("addToHistory() skips blank lines and repeats of the last line, and keeps the newest", () => {
  assert.deepEqual(addToHistory(["a"], "a"), ["a"]);
  assert.deepEqual(addToHistory(["a"], "  "), ["a"]);
  assert.deepEqual(addToHistory(["a", "b"], "a"), ["a", "b", "a"]);
  assert.deepEqual(addToHistory(["a", "b", "c"], "d", 3), ["b", "c", "d"]);
});

Deno.test("readHistoryFile() and appendHistoryFile() keep lines across sessions", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/history`;
    assert.deepEqual(await readHistoryFile(path), []);
    await appendHistoryFile(path, "service1.rpc1 1 a");
    await appendHistoryFile(path, ".list");
    assert.deepEqual(await readHistoryFile(path), ["service1.rpc1 1 a", ".list"]);
    assert.deepEqual(await readHistoryFile(path, 1), [".list"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A stream that delivers the given chunks, then ends. */
function chunks(...parts: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return ReadableStream.from(parts.map((part) => encoder.encode(part)));
}

Deno.test("KeyReader gives keys in order and null at the end of input", async () => {
  const reader = new KeyReader(chunks("ab\x1b", "[A\r"));
  const keys: (Key | null)[] = [];
  for (let i = 0; i < 4; i++) keys.push(await reader.next());
  assert.deepEqual(keys, [{ name: "text", text: "ab" }, { name: "up" }, { name: "enter" }, null]);
});

Deno.test("KeyReader sends Ctrl-C to the interrupt handler while one is set", async () => {
  const interrupted = Promise.withResolvers<void>();
  const input = new TransformStream<Uint8Array, Uint8Array>();
  const reader = new KeyReader(input.readable);
  reader.onInterrupt(() => interrupted.resolve());
  const writer = input.writable.getWriter();
  await writer.write(new TextEncoder().encode("x\x03"));
  await interrupted.promise;
  reader.onInterrupt(undefined);
  assert.deepEqual(await reader.next(), { name: "text", text: "x" });
  await writer.close();
  assert.equal(await reader.next(), null);
});

Deno.test("LineEditor reads a line with completion and history, and null at Ctrl-D", async () => {
  const written: string[] = [];
  const editor = new LineEditor({
    keys: new KeyReader(chunks("serv\t1\r", "\x1b[A\x7f2\r", "\x04")),
    write: (text) => written.push(text),
    columns: () => 80,
    complete: (line, cursor) => ({
      start: 0,
      end: cursor,
      candidates: ["service1.", "service2."].filter((word) => word.startsWith(line)),
    }),
    history: ["earlier"],
  });
  // "serv" + tab completes the common prefix "service"; then "1".
  assert.equal(await editor.readLine("> "), "service1");
  assert.deepEqual(editor.history, ["earlier", "service1"]);
  written.length = 0;
  // Up recalls service1; backspace and 2 make it service2.
  assert.equal(await editor.readLine("> "), "service2");
  assert.ok(written.includes("\r\n"));
  assert.equal(await editor.readLine("> "), null);
});
