/** Checks on code and commands shared by every kind of call. */
import { CodeboxError, languages, validationError, type Language } from '@codebox/core'

/**
 * What a cell or a context can run: a language of the native API, or `bash` (a persistent shell,
 * kernel_bash.py), which E2B's code interpreter offers and the native API does not.
 */
export type KernelLanguage = Language | 'bash'

/** Every {@link KernelLanguage}. */
export const kernelLanguages: readonly KernelLanguage[] = [...languages, 'bash']

/** `language` as a {@link KernelLanguage}; ValidationError (naming `field`) for anything else. */
export function checkKernelLanguage(field: string, language: unknown): KernelLanguage {
  if (!(kernelLanguages as readonly unknown[]).includes(language)) {
    throw validationError(field, `must be one of ${kernelLanguages.join(', ')}, got ${JSON.stringify(language)}`)
  }
  return language as KernelLanguage
}

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
