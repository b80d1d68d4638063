/** Scales each value by `factor` and returns the sum as text. */
export function rpc3(factor: number, values: number[]): string {
  const total = values.reduce((sum, value) => sum + value * factor, 0);
  return `sum=${total}`;
}
