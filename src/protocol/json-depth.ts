/** How deeply a JSON value nests: a guard for values that will be encoded (encoding recurses). */

/** `true` when `value` nests arrays and objects deeper than `max` levels (a scalar is 0, `[]` is 1). */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  // Iterative: a recursive walk would hit the very stack limit this guards against.
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (item === null || typeof item !== 'object') continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(item) ? item : Object.values(item)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return false;
}
