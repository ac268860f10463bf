/**
 * X-Robots-Tag: `noai`, `noimageai`, `noindex`, `noimageindex` (configurable) forbid using the
 * image. A header may be scoped to one crawler (`otherbot: noindex`): it applies to us when it is
 * unscoped, scoped to `*`, or scoped to our user-agent token (the first product token of the user
 * agent, lowercased: `kiln`).
 */

/** The product token of a user agent string (`kiln/0.1 (+https://...)` -> `kiln`). */
export function userAgentToken(userAgent: string): string {
  return (userAgent.split(/[\s/]/)[0] ?? '').toLowerCase();
}

/**
 * The first disallowed directive that applies to `uaToken` in the X-Robots-Tag header value(s), or
 * undefined when the image may be used.
 */
export function disallowingRobotsDirective(
  header: string | string[] | undefined,
  uaToken: string,
  disallowed: readonly string[],
): string | undefined {
  if (header === undefined) return undefined;
  const deny = new Set(disallowed.map((d) => d.toLowerCase()));
  for (const value of Array.isArray(header) ? header : [header]) {
    let scope: string | undefined;
    let rest = value;
    const m = /^\s*([A-Za-z0-9_*.-]+)\s*:(.*)$/.exec(value);
    // "unavailable_after: <date>" is a directive, not a user-agent scope.
    if (m && m[1]!.toLowerCase() !== 'unavailable_after' && !deny.has(m[1]!.toLowerCase())) {
      scope = m[1]!.toLowerCase();
      rest = m[2]!;
    }
    if (scope !== undefined && scope !== '*' && scope !== uaToken) continue;
    for (const directive of rest.split(',').map((d) => d.trim().toLowerCase())) {
      if (deny.has(directive)) return directive;
    }
  }
  return undefined;
}
