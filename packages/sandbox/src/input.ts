/** Checks on code and commands shared by every kind of call. */
import { CodeboxError, validationError } from '@codebox/core'

/** Largest code of one cell or command, bytes. */
export const MAX_CODE_BYTES = 4 * 1024 * 1024

export function checkCode(field: string, code: unknown): void {
  if (typeof code !== 'string') throw validationError(field, 'must be a string')
  if (code.trim() === '') throw validationError(field, 'is empty')
  const bytes = Buffer.byteLength(code)
  if (bytes > MAX_CODE_BYTES) {
    throw new CodeboxError('LimitExceeded', `${field} is ${bytes} bytes, over the ${MAX_CODE_BYTES}-byte limit; write large data to a file instead`, {
      details: { field, limit: MAX_CODE_BYTES },
    })
  }
}
