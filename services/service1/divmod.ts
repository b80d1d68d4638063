/** Two return values: the quotient and the remainder. */
export function divmod(a: number, b: number): [number, number] {
  if (b === 0) throw new RangeError("division by zero");
  return [Math.floor(a / b), a - Math.floor(a / b) * b];
}
