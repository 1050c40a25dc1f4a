/**
 * Harbor's filter syntax: the semantics of bmatcuk/doublestar v1.3 `Match`, which Harbor uses
 * for preheat and replication filters (v1.1.1 up to Harbor 2.10, v1.3.4 from 2.11; 1.3 only
 * adds `/` inside `{a,b}`).
 *
 * - `/` separates components and the whole name must match.
 * - `*` matches any run without `/`; `?` one character; `[abc]`, `[a-z]`, `[^x]` are classes.
 * - `**` crosses `/` only as a whole component; anywhere else it behaves like `*`. A trailing
 *   `/**` needs at least one more component (`a/**` does not match `a`).
 * - `{a,b}` gives alternatives (nested, may hold `/`); `\` escapes the next character.
 *
 * Matching walks the name one component at a time; a component match returns the patterns
 * left for the next component, which is how alternatives spanning `/` are followed. Like the
 * Go code, a malformed pattern is only noticed when matching reaches the bad part, so configs
 * check patterns up front with `patternError`.
 */

export class PatternError extends Error {
  constructor(readonly pattern: string, reason: string) {
    super(`bad pattern ${JSON.stringify(pattern)}: ${reason}`);
    this.name = 'PatternError';
  }
}

/** True when `name` matches `pattern` as a whole. Throws PatternError on a malformed pattern. */
export function match(pattern: string, name: string): boolean {
  try {
    return matchComponents(pattern, splitName(name));
  } catch (err) {
    if (err instanceof BadPattern) throw new PatternError(pattern, err.message);
    throw err;
  }
}

/** Why `pattern` is malformed, or undefined if it is well formed. */
export function patternError(pattern: string): string | undefined {
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      if (i + 1 >= pattern.length) return 'a trailing \\ escapes nothing';
      i++;
    } else if (c === '[') {
      const end = indexUnescaped(pattern.slice(i + 1), ']');
      if (end < 0) return `the [ at offset ${i} is never closed`;
      const reason = classError(Array.from(pattern.slice(i + 1, i + 1 + end)));
      if (reason !== undefined) return reason;
      i += end + 1;
    } else if (c === '{' && splitAlternatives(pattern.slice(i + 1)) === null) {
      return `the { at offset ${i} is never closed`;
    }
  }
  return undefined;
}

class BadPattern extends Error {}

/** Finds `ch` not preceded by a backslash (one character of look-behind, as doublestar does). */
function indexUnescaped(s: string, ch: string): number {
  let from = 0;
  for (;;) {
    const i = s.indexOf(ch, from);
    if (i <= 0 || s[i - 1] !== '\\') return i;
    from = i + 1;
  }
}

function splitName(name: string): string[] {
  const parts: string[] = [];
  let rest = name;
  for (;;) {
    const i = indexUnescaped(rest, '/');
    if (i < 0) {
      parts.push(rest);
      return parts;
    }
    parts.push(rest.slice(0, i));
    rest = rest.slice(i + 1);
  }
}

function matchComponents(pattern: string, comps: readonly string[]): boolean {
  if (pattern === '') return comps.length === 0 || (comps.length === 1 && comps[0] === '');
  const slash = indexUnescaped(pattern, '/');
  if ((slash < 0 ? pattern : pattern.slice(0, slash)) === '**') {
    if (slash < 0) return true;
    const rest = pattern.slice(slash + 1);
    for (let i = 0; i < comps.length; i++) if (matchComponents(rest, comps.slice(i))) return true;
    return false;
  }
  const next = matchComponent(pattern, comps[0]);
  if (next === null) return false;
  if (next.length === 0) return comps.length === 1;
  return comps.length > 1 && next.some((p) => matchComponents(p, comps.slice(1)));
}

const width = (cp: number): number => (cp > 0xffff ? 2 : 1);

/** Matches one name component; returns the patterns left for the following components, or null. */
function matchComponent(pattern: string, name: string): string[] | null {
  let p = 0;
  let n = 0;
  while (p < pattern.length && n < name.length) {
    const pc = pattern.codePointAt(p)!;
    const nc = name.codePointAt(n)!;
    const ch = pattern[p];
    if (ch === '/') return null;
    if (ch === '\\') {
      p++;
      if (p >= pattern.length) throw new BadPattern('a trailing \\ escapes nothing');
      const esc = pattern.codePointAt(p)!;
      if (esc !== nc) return null;
      p += width(esc);
      n += width(nc);
    } else if (ch === '*') {
      p++;
      if (p >= pattern.length) return [];
      if (pattern[p] === '/') return [pattern.slice(p + 1)];
      // Like doublestar, the star never tries to swallow the whole rest of the component here.
      for (; n < name.length; n += width(name.codePointAt(n)!)) {
        const m = matchComponent(pattern.slice(p), name.slice(n));
        if (m !== null) return m;
      }
      return null;
    } else if (ch === '[') {
      p++;
      const end = indexUnescaped(pattern.slice(p), ']');
      if (end < 0) throw new BadPattern('unclosed [');
      if (!classMatches(Array.from(pattern.slice(p, p + end)), nc)) return null;
      p += end + 1;
      n += width(nc);
    } else if (ch === '{') {
      const alt = splitAlternatives(pattern.slice(p + 1));
      if (alt === null) throw new BadPattern('unclosed {');
      const tail = pattern.slice(p + 1 + alt.end);
      let out: string[] | null = null;
      for (const o of alt.options) {
        const m = matchComponent(o + tail, name.slice(n));
        if (m !== null) out = [...(out ?? []), ...m];
      }
      return out;
    } else if (ch === '?' || pc === nc) {
      p += width(pc);
      n += width(nc);
    } else {
      return null;
    }
  }
  if (n < name.length) return null;
  if (p >= pattern.length) return [];
  const rest = pattern.slice(p);
  const slash = indexUnescaped(rest, '/');
  if (!zeroLength(slash < 0 ? rest : rest.slice(0, slash))) return null;
  return slash < 0 ? [] : [rest.slice(slash + 1)];
}

/** Whether a component pattern can match the empty string (doublestar's isZeroLengthPattern). */
function zeroLength(pattern: string): boolean {
  if (pattern === '' || pattern === '*' || pattern === '**') return true;
  if (pattern[0] !== '{') return false;
  const alt = splitAlternatives(pattern.slice(1));
  if (alt === null) throw new BadPattern('unclosed {');
  return zeroLength(pattern.slice(1 + alt.end)) && alt.options.some(zeroLength);
}

/** Splits `a,b}rest` (the text after `{`) into options; `end` is the offset after the `}`. */
function splitAlternatives(s: string): { options: string[]; end: number } | null {
  const options: string[] = [];
  let depth = 1;
  let escaped = false;
  let start = 0;
  let i = 0;
  while (depth > 0) {
    if (i >= s.length) return null;
    const c = s[i];
    if (escaped) escaped = false;
    else if (c === '\\') escaped = true;
    else if (c === '{') depth++;
    else if (c === '}') depth--;
    else if (c === ',' && depth === 1) {
      options.push(s.slice(start, i));
      start = i + 1;
    }
    i++;
  }
  options.push(s.slice(start, i - 1));
  return { options, end: i };
}

interface Range {
  lo: number;
  hi: number;
}

/** Parses a class body (between `[` and `]`) into ranges, or a reason it is malformed. */
function parseClass(cls: readonly string[]): { negated: boolean; ranges: Range[] } | string {
  if (cls.length === 0) return 'an empty character class []';
  const negated = cls[0] === '^';
  const ranges: Range[] = [];
  let i = negated ? 1 : 0;
  const take = (): number | string => {
    let c = cls[i++];
    if (c === '\\') {
      if (i >= cls.length) return 'a \\ at the end of a character class';
      c = cls[i++];
    }
    return c.codePointAt(0)!;
  };
  while (i < cls.length) {
    if (cls[i] === '-') return 'a character class range with no start';
    const lo = take();
    if (typeof lo === 'string') return lo;
    let hi = lo;
    if (i < cls.length && cls[i] === '-') {
      i++;
      if (i >= cls.length || cls[i] === '-') return 'a character class range with no end';
      const h = take();
      if (typeof h === 'string') return h;
      hi = h;
    }
    ranges.push({ lo, hi });
  }
  return { negated, ranges };
}

function classError(cls: readonly string[]): string | undefined {
  const parsed = parseClass(cls);
  return typeof parsed === 'string' ? parsed : undefined;
}

function classMatches(cls: readonly string[], cp: number): boolean {
  const parsed = parseClass(cls);
  if (typeof parsed === 'string') throw new BadPattern(parsed);
  const hit = parsed.ranges.some((r) => r.lo <= cp && cp <= r.hi);
  return hit !== parsed.negated;
}
