/** Repeats `text` `count` times. A negative count is an error the caller sees. */
export function rpc1(count: number, text: string): string {
  if (count < 0) throw new RangeError(`count must not be negative, got ${count}`);
  return text.repeat(count);
}
