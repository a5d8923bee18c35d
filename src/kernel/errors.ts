/**
 * Error for input files that are not what the caller asked for: an empty or truncated
 * image, a non-kernel ELF, an unsupported boot protocol. The message is one line meant
 * for a human (the CLI prints it without a stack trace).
 */
export class BadInputError extends Error {
  /** Optional path of the offending file, for messages. */
  readonly path?: string;

  constructor(message: string, options?: { path?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BadInputError';
    if (options?.path !== undefined) this.path = options.path;
  }
}

/** True for a BadInputError (also across module copies, by name). */
export function isBadInputError(e: unknown): e is BadInputError {
  return e instanceof BadInputError || (e instanceof Error && e.name === 'BadInputError');
}
