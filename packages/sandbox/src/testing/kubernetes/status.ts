/**
 * Errors of the fake Kubernetes API server, answered as the `Status` objects a real API server
 * sends (kind Status, status Failure, reason, code, details), so clients read them as they would
 * read a real cluster's errors.
 */

/** The subset of metav1.StatusReason the fake answers with. */
export type StatusReason =
  | 'BadRequest'
  | 'Unauthorized'
  | 'Forbidden'
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'Gone'
  | 'Expired'
  | 'Invalid'
  | 'MethodNotAllowed'
  | 'RequestEntityTooLarge'
  | 'UnsupportedMediaType'
  | 'NotAcceptable'
  | 'InternalError'

const codes: Record<StatusReason, number> = {
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  AlreadyExists: 409,
  Conflict: 409,
  Gone: 410,
  Expired: 410,
  Invalid: 422,
  MethodNotAllowed: 405,
  RequestEntityTooLarge: 413,
  UnsupportedMediaType: 415,
  NotAcceptable: 406,
  InternalError: 500,
}

/** Names the object an error is about, as Status.details does. */
export interface StatusDetails {
  name?: string
  uid?: string
  group?: string
  kind?: string
  causes?: { reason?: string; message: string; field?: string }[]
}

/** An error the fake answers as a Status object with its HTTP code. */
export class KubeError extends Error {
  readonly reason: StatusReason
  readonly code: number
  readonly details: StatusDetails | undefined

  constructor(reason: StatusReason, message: string, details?: StatusDetails) {
    super(message)
    this.reason = reason
    this.code = codes[reason]
    this.details = details
  }

  /** The body a real API server sends for this error. */
  toStatus(): Record<string, unknown> {
    return statusObject(this.reason, this.message, this.details)
  }
}

/** A metav1.Status of failure (also used as the object of a watch ERROR event). */
export function statusObject(reason: StatusReason, message: string, details?: StatusDetails): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details ? { details } : {}),
    code: codes[reason],
  }
}

/** The Status a successful delete of an object already gone answers with. */
export function successStatus(details: StatusDetails): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details }
}
