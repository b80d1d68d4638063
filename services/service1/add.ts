/**
 * One source file serving three overloads of `add`: two ints, two floats, or
 * the sum of a list of ints. The server picks the overload by argument types
 * and checks the result against that overload's declared return type.
 */
export function add(a: number | number[], b?: number): number {
  if (Array.isArray(a)) return a.reduce((sum, item) => sum + item, 0);
  return a + (b ?? 0);
}
