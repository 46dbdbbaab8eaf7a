/**
 * How the page reaches its server: always its own origin, with the API key (when the server has
 * keys) kept in sessionStorage, never in a URL. Builds the SDK's clients (sessions and files, code,
 * the agent): the page makes no request of its own. Also a fetch that reports upload progress
 * (the SDK takes a `fetch` option; browsers give progress only to XHR).
 */
import { AgentClient, CodeboxClient, CodeInterpreter } from '@codebox/sdk'

const keyItem = 'codebox.apiKey'

/** The API key this browser tab was given, if any. */
export function apiKey(): string | undefined {
  return sessionStorage.getItem(keyItem) ?? undefined
}

/** Keeps an API key for this tab (sessionStorage: gone when the tab closes). */
export function setApiKey(key: string | undefined): void {
  if (key) sessionStorage.setItem(keyItem, key)
  else sessionStorage.removeItem(keyItem)
}

/** A client of the page's own server. */
export function client(): CodeboxClient {
  return new CodeboxClient({ baseUrl: location.origin, apiKey: apiKey(), maxRetries: 1 })
}

/** A CodeInterpreter bound to an existing session of the page's server; `onUploadProgress` sees uploads' bytes. */
export function interpreter(sessionId: string, onUploadProgress?: (sent: number, total: number) => void): CodeInterpreter {
  return new CodeInterpreter({
    baseUrl: location.origin,
    apiKey: apiKey(),
    sessionId,
    maxRetries: 1,
    ...(onUploadProgress ? { fetch: progressFetch(onUploadProgress) } : {}),
  })
}

/** The agent of the page's server (the Generate and History tabs). The SDK never retries a turn (it runs code); reads get one retry. */
export function agent(): AgentClient {
  return new AgentClient({ baseUrl: location.origin, apiKey: apiKey(), maxRetries: 1 })
}

/**
 * A fetch for the SDK whose PUT/POST with a Blob body goes through XMLHttpRequest, so upload
 * progress can be shown; everything else is the browser's fetch.
 */
function progressFetch(onProgress: (sent: number, total: number) => void): typeof fetch {
  return async (input, init) => {
    if (!(init?.body instanceof Blob)) return fetch(input, init)
    const body = init.body
    return new Promise<Response>((resolve, reject) => {
      const xhr = new XMLHttpRequest()
      xhr.open(init.method ?? 'GET', typeof input === 'string' ? input : input instanceof URL ? input.href : input.url)
      new Headers(init.headers).forEach((value, name) => xhr.setRequestHeader(name, value))
      xhr.responseType = 'blob'
      xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : body.size)
      xhr.onload = () => {
        const headers = new Headers()
        for (const line of xhr
          .getAllResponseHeaders()
          .trim()
          .split(/[\r\n]+/)) {
          const at = line.indexOf(':')
          if (at > 0) headers.append(line.slice(0, at).trim(), line.slice(at + 1).trim())
        }
        resolve(new Response(xhr.status === 204 ? null : (xhr.response as Blob), { status: xhr.status, statusText: xhr.statusText, headers }))
      }
      xhr.onerror = () => reject(new TypeError('network error during upload'))
      xhr.onabort = () => reject(init.signal?.reason ?? new DOMException('aborted', 'AbortError'))
      init.signal?.addEventListener('abort', () => xhr.abort(), { once: true })
      xhr.send(body)
    })
  }
}
