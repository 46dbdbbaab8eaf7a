/** The AWS account number codebox shows for a tenant in ARNs: 12 digits, stable, derived from the tenant id. */
import { createHash } from 'node:crypto'

/** A stable 12-digit account number per tenant, for ARNs. */
export const accountOf = (tenant: string): string =>
  (BigInt(`0x${createHash('sha256').update(tenant).digest('hex').slice(0, 15)}`) % 10n ** 12n).toString().padStart(12, '0')
