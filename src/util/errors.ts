/** Marks a HepolyError across copies of this module (see `Symbol.hasInstance` below). */
const BRAND = Symbol.for('hepoly.HepolyError');

/**
 * One error type for everything a user can get wrong. The CLI prints `message` (which
 * already names the file, the field and the fix) and exits with `exitCode`; a stack trace
 * is only shown with HEPOLY_DEBUG=1, because it helps us, not the user.
 */
export class HepolyError extends Error {
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'HepolyError';
    this.exitCode = options.exitCode ?? 1;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /**
   * By brand, not prototype: a module loaded twice (a test's require hook beside a lazy
   * `import()`, as the queue is loaded) has two HepolyError classes, and a check against the
   * other one would take a user's error for a crash. Subclasses keep the prototype check.
   */
  static override [Symbol.hasInstance](x: unknown): boolean {
    if (this !== HepolyError) return Function.prototype[Symbol.hasInstance].call(this, x);
    return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** Builds the standard "file: field: expected X, found Y. fix" message. */
export function describeProblem(parts: {
  file?: string;
  field?: string;
  expected?: string;
  found?: string;
  fix?: string;
  what?: string;
}): string {
  const where = [parts.file, parts.field].filter(Boolean).join(': ');
  const body: string[] = [];
  if (parts.what) body.push(parts.what);
  if (parts.expected !== undefined) body.push(`expected ${parts.expected}`);
  if (parts.found !== undefined) body.push(`found ${parts.found}`);
  let text = (where ? `${where}: ` : '') + body.join(', ');
  if (parts.fix) text += `. ${parts.fix}`;
  return text;
}
