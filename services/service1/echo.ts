/** Returns its argument: the procedure benchmarks measure. */
export function echo(text: string): string {
  return text;
}
