// Harbor's filter syntax (bmatcuk/doublestar v1.3 Match): one table per rule of the user guide's
// table (`*`, `**`, `?`, `[class]`, `{alt1,...}`), plus the spec's separator, whole-string,
// escape and malformed-pattern rules.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { match, patternError, PatternError } from '../shared/doublestar.js';

type Row = [pattern: string, name: string, matches: boolean];

function table(rows: Row[]): void {
  for (const [pattern, name, want] of rows) {
    it(`${JSON.stringify(pattern)} ${want ? 'matches' : 'does not match'} ${JSON.stringify(name)}`, () => {
      assert.equal(match(pattern, name), want);
    });
  }
}

describe('doublestar: * matches any run of non-separators', () => {
  table([
    ['*', 'nginx', true],
    ['*', '', true],
    ['*', 'library/nginx', false],
    ['library/*', 'library/nginx', true],
    ['library/*', 'library/team/nginx', false],
    ['*/nginx', 'library/nginx', true],
    ['v1.*', 'v1.25', true],
    ['v1.*', 'v2.1', false],
    ['a*b*c', 'axxbyyc', true],
    ['a*b*c', 'axxbyy', false],
    ['*-alpine', '1.25-alpine', true],
  ]);
});

describe('doublestar: ** matches any run, separators included, only as a whole component', () => {
  table([
    ['**', 'nginx', true],
    ['**', 'library/team/nginx', true],
    ['**', '', true],
    ['library/**', 'library/team/nginx', true],
    ['library/**', 'library/nginx', true],
    ['library/**', 'library', false],
    ['**/nginx', 'nginx', true],
    ['**/nginx', 'a/b/nginx', true],
    ['**/nginx', 'a/b/nginx2', false],
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['a/**/b', 'a/x/y/c', false],
    // Inside a component, ** is just *.
    ['a**', 'abc', true],
    ['a**', 'ab/c', false],
    ['x/**y', 'x/ay', true],
    ['x/**y', 'x/a/y', false],
  ]);
});

describe('doublestar: ? matches one non-separator character', () => {
  table([
    ['v?', 'v1', true],
    ['v?', 'v10', false],
    ['v?', 'v', false],
    ['a?b', 'a/b', false],
    ['?', 'é', true],
    ['?', '😀', true],
    ['??', '😀', false],
  ]);
});

describe('doublestar: [class] matches one character of a set, range or complement', () => {
  table([
    ['[abc]', 'b', true],
    ['[abc]', 'd', false],
    ['v[0-9]', 'v7', true],
    ['v[0-9]', 'va', false],
    ['v[0-9][0-9]', 'v12', true],
    ['[a-cx-z]', 'y', true],
    ['[^x]', 'y', true],
    ['[^x]', 'x', false],
    ['[^a-c]', 'b', false],
    ['[^a-c]', 'd', true],
    ['a[/]b', 'a/b', false],
    ['[\\]]', ']', true],
    ['[\\-]', '-', true],
  ]);
});

describe('doublestar: {alt1,...} matches any of the alternatives', () => {
  table([
    ['{v1,latest}', 'latest', true],
    ['{v1,latest}', 'v1', true],
    ['{v1,latest}', 'v2', false],
    ['v{1,2}.*', 'v2.0', true],
    ['{library,base}/*', 'base/alpine', true],
    ['{library,base}/*', 'other/alpine', false],
    // doublestar 1.3 (Harbor 2.11+) lets an alternative span components.
    ['{a/b,c}/d', 'a/b/d', true],
    ['{a/b,c}/d', 'c/d', true],
    ['{a/b,c}/d', 'a/d', false],
    ['{a,{b,c}}x', 'cx', true],
    ['v1{,-alpine}', 'v1', true],
    ['v1{,-alpine}', 'v1-alpine', true],
    ['v1{,-alpine}', 'v1-slim', false],
    ['{v*,latest}', 'v1.25.3', true],
  ]);
});

describe('doublestar: / separates, the whole name must match, \\ escapes', () => {
  table([
    ['nginx', 'nginx', true],
    ['nginx', 'nginx-extra', false],
    ['lib', 'library', false],
    ['library/nginx', 'library/nginx', true],
    ['library/nginx', 'library/nginx/', false],
    ['\\*', '*', true],
    ['\\*', 'a', false],
    ['a\\?', 'a?', true],
    ['a\\?', 'ab', false],
    ['\\{a,b\\}', '{a,b}', true],
    ['', '', true],
    ['', 'a', false],
  ]);
});

describe('doublestar: malformed patterns', () => {
  it('are errors when matching reaches them, and only then (as in Go)', () => {
    assert.throws(() => match('[a', 'a'), PatternError);
    assert.throws(() => match('{a,b', 'a'), PatternError);
    assert.throws(() => match('a\\', 'ab'), /trailing/);
    assert.equal(match('a[', 'b'), false, 'the bad part is never reached');
  });

  it('are reported up front by patternError, so configs fail at startup', () => {
    for (const p of ['[a', '{a,b', 'a\\', '[]', '[a-]', '[-a]', '[^-a]', 'x/{a,{b}']) {
      assert.equal(typeof patternError(p), 'string', p);
    }
    for (const p of ['**', 'library/*', '{v*,latest}', '[^a-c]?', 'a\\*', '[\\]]', '']) {
      assert.equal(patternError(p), undefined, p);
    }
  });
});
