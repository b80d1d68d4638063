/** Pairs numbers with names: `[1, 2], ["a", "b"]` gives `"1=a, 2=b"`. */
export function rpc2(numbers: number[], names: string[]): string {
  if (numbers.length !== names.length) {
    throw new Error(`got ${numbers.length} numbers but ${names.length} names`);
  }
  return numbers.map((number, i) => `${number}=${names[i]}`).join(", ");
}
