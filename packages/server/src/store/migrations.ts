/**
 * The versioned schema of the store. Each migration runs once, in its own transaction, and
 * `PRAGMA user_version` records the last one applied. Append new migrations; never edit one that
 * has shipped, since databases in the field have already run it.
 */
import type { DatabaseSync } from 'node:sqlite'
import { CodeboxError } from '@codebox/core'
import { transaction } from './sql.ts'

export interface Migration {
  /** 1, 2, 3, … with no gaps; the value `user_version` holds once this migration has run. */
  version: number
  description: string
  sql: string
}

/** SQLite's own clock in the format of `Date.toISOString()`. */
const sqlNow = `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`

export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: 'tenants, API keys, interpreters (with the built-in codebox.v1), sessions and the audit log',
    sql: `
      CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        max_sessions INTEGER,
        starts_per_minute INTEGER,
        invokes_per_second REAL
      ) STRICT;

      CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants (id),
        name TEXT,
        prefix TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
      ) STRICT;
      CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

      CREATE TABLE interpreters (
        interpreter_id TEXT PRIMARY KEY,
        tenant TEXT REFERENCES tenants (id),
        name TEXT NOT NULL,
        description TEXT,
        image TEXT NOT NULL,
        limits TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('READY', 'DELETED')),
        created_at TEXT NOT NULL,
        last_updated_at TEXT NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX interpreters_live_name ON interpreters (tenant, name) WHERE status = 'READY';

      CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants (id),
        interpreter_id TEXT NOT NULL REFERENCES interpreters (interpreter_id),
        name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('READY', 'TERMINATED')),
        created_at TEXT NOT NULL,
        last_updated_at TEXT NOT NULL,
        timeout_seconds INTEGER NOT NULL,
        limits TEXT NOT NULL,
        client_token TEXT,
        key_id TEXT,
        ended_at TEXT,
        end_reason TEXT
      ) STRICT;
      CREATE UNIQUE INDEX sessions_client_token ON sessions (tenant, client_token) WHERE client_token IS NOT NULL;
      CREATE INDEX sessions_tenant_created ON sessions (tenant, created_at DESC, session_id DESC);
      CREATE INDEX sessions_active ON sessions (tenant) WHERE status = 'READY';

      CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        tenant TEXT NOT NULL,
        key_id TEXT,
        session_id TEXT,
        action TEXT NOT NULL,
        language TEXT,
        code_bytes INTEGER,
        code_sha256 TEXT,
        exit_code INTEGER,
        duration_ms REAL NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT,
        request_id TEXT
      ) STRICT;
      CREATE INDEX audit_tenant_session ON audit (tenant, session_id, id);
      CREATE INDEX audit_tenant ON audit (tenant, id);

      INSERT INTO interpreters (interpreter_id, tenant, name, description, image, limits, status, created_at, last_updated_at)
      VALUES ('codebox.v1', NULL, 'codebox', 'The built-in interpreter: Python, JavaScript and TypeScript with the data stack',
              'default', '{}', 'READY', ${sqlNow}, ${sqlNow});
    `,
  },
  {
    version: 2,
    description: 'AgentCore compatibility: SigV4 access keys, interpreter network settings, tags and idempotency tokens',
    sql: `
      CREATE TABLE aws_keys (
        access_key_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants (id),
        name TEXT,
        secret_sealed TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
      ) STRICT;
      CREATE INDEX aws_keys_tenant ON aws_keys (tenant, created_at);

      ALTER TABLE interpreters ADD COLUMN network TEXT NOT NULL DEFAULT '{"mode":"SANDBOX"}';
      ALTER TABLE interpreters ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
      ALTER TABLE interpreters ADD COLUMN client_token TEXT;
      CREATE UNIQUE INDEX interpreters_client_token ON interpreters (tenant, client_token) WHERE client_token IS NOT NULL;
    `,
  },
  {
    version: 3,
    description: "AgentCore: an interpreter's executionRoleArn, kept to be returned by GetCodeInterpreter",
    sql: `ALTER TABLE interpreters ADD COLUMN execution_role_arn TEXT;`,
  },
  {
    version: 4,
    description: "the agent's short-term memory: conversations (per tenant, with their code session and expiry) and their turns; a tenant's agent-turn quota",
    sql: `
      ALTER TABLE tenants ADD COLUMN agent_turns_per_minute INTEGER;

      CREATE TABLE conversations (
        tenant TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        title TEXT NOT NULL,
        session_id TEXT,
        created_at TEXT NOT NULL,
        last_updated_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (tenant, conversation_id)
      ) STRICT;
      CREATE INDEX conversations_tenant_updated ON conversations (tenant, last_updated_at DESC, conversation_id DESC);
      CREATE INDEX conversations_expires ON conversations (expires_at);

      CREATE TABLE conversation_turns (
        turn_id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('answer', 'generate')),
        prompt TEXT NOT NULL,
        text TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'canceled')),
        model TEXT,
        skipped TEXT NOT NULL,
        usage TEXT NOT NULL,
        events TEXT NOT NULL,
        created_at TEXT NOT NULL,
        FOREIGN KEY (tenant, conversation_id) REFERENCES conversations (tenant, conversation_id) ON DELETE CASCADE
      ) STRICT;
      CREATE INDEX conversation_turns_conversation ON conversation_turns (tenant, conversation_id, turn_id);
    `,
  },
  {
    version: 5,
    description: "an interpreter's preload: the Python modules its sessions import before hand-over (JSON list; NULL means the server's CODEBOX_PRELOAD)",
    sql: `ALTER TABLE interpreters ADD COLUMN preload TEXT;`,
  },
  {
    version: 6,
    description: 'the sandbox serving each session, so that a restarted server can find and re-adopt it',
    sql: `ALTER TABLE sessions ADD COLUMN sandbox_id TEXT;`,
  },
  {
    version: 7,
    description: "an interpreter's sandbox driver (NULL means the server's CODEBOX_DRIVER)",
    sql: `ALTER TABLE interpreters ADD COLUMN driver TEXT;`,
  },
  {
    version: 8,
    description: 'hosted agent runtimes: runtimes (DEFAULT endpoint pin), their immutable versions, code bundles in 8 MiB chunks, sealed per-runtime secrets',
    sql: `
      CREATE TABLE runtime_bundles (
        bundle_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants (id),
        status TEXT NOT NULL CHECK (status IN ('UPLOADING', 'READY')),
        sha256 TEXT,
        bytes INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX runtime_bundles_created ON runtime_bundles (created_at);

      CREATE TABLE runtime_bundle_chunks (
        bundle_id TEXT NOT NULL REFERENCES runtime_bundles (bundle_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (bundle_id, seq)
      ) STRICT;

      CREATE TABLE runtimes (
        runtime_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants (id),
        name TEXT NOT NULL,
        description TEXT,
        status TEXT NOT NULL CHECK (status IN ('READY')),
        latest_version INTEGER NOT NULL,
        pinned_version INTEGER,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX runtimes_name ON runtimes (tenant, name);

      CREATE TABLE runtime_versions (
        runtime_id TEXT NOT NULL REFERENCES runtimes (runtime_id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        settings TEXT NOT NULL,
        bundle_id TEXT NOT NULL REFERENCES runtime_bundles (bundle_id),
        created_at TEXT NOT NULL,
        PRIMARY KEY (runtime_id, version)
      ) STRICT;
      CREATE INDEX runtime_versions_bundle ON runtime_versions (bundle_id);

      CREATE TABLE runtime_secrets (
        runtime_id TEXT NOT NULL REFERENCES runtimes (runtime_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value_sealed TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (runtime_id, name)
      ) STRICT;
    `,
  },
  {
    version: 9,
    description:
      'whether a session uses the model gateway, and its tag (JSON {tag?}; NULL for none), so a restarted server opens its listener with the gateway again',
    sql: `ALTER TABLE sessions ADD COLUMN gateway TEXT;`,
  },
  {
    version: 10,
    description: "the hosted agent runtime a session's sandbox runs (NULL for a code interpreter's session)",
    sql: `ALTER TABLE sessions ADD COLUMN runtime_id TEXT;`,
  },
  {
    version: 11,
    description:
      'what hosted agents printed, per runtime session (runtime_logs, keyed by the codebox session that ran it), kept as text in chunks bounded by the server (runtime_log_chunks), so logs outlive a restart and replicas share them',
    sql: `
      CREATE TABLE runtime_logs (
        session_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        runtime_id TEXT NOT NULL REFERENCES runtimes (runtime_id) ON DELETE CASCADE,
        runtime_session_id TEXT NOT NULL,
        version TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        end_reason TEXT,
        bytes INTEGER NOT NULL DEFAULT 0,
        dropped_bytes INTEGER NOT NULL DEFAULT 0
      ) STRICT;
      CREATE INDEX runtime_logs_runtime ON runtime_logs (tenant, runtime_id, started_at DESC);
      CREATE INDEX runtime_logs_ended ON runtime_logs (ended_at) WHERE ended_at IS NOT NULL;

      CREATE TABLE runtime_log_chunks (
        session_id TEXT NOT NULL REFERENCES runtime_logs (session_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        text TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        PRIMARY KEY (session_id, seq)
      ) STRICT;
    `,
  },
  {
    version: 12,
    description:
      "a hosted agent's runtime session as its sandbox serves it (JSON {runtimeSessionId, version, network, taskId?}), so a restarted server serves it again",
    sql: `ALTER TABLE sessions ADD COLUMN hosted TEXT;`,
  },
  {
    version: 13,
    description: 'a session started through the E2B API: the template it was asked for and its metadata (JSON {template, metadata})',
    sql: `ALTER TABLE sessions ADD COLUMN e2b TEXT;`,
  },
  {
    version: 14,
    description:
      'the replica (CODEBOX_REPLICA_ID) that started a session, so a starting replica re-adopts or ends only its own; on PostgreSQL, the rate-limit token buckets its replicas share',
    sql: `ALTER TABLE sessions ADD COLUMN replica_id TEXT;`,
  },
  {
    version: 15,
    description:
      "which replica collects a running hosted agent's output into its log (collector, its lease renewed at collected_ms) and the agent's output offsets the log has reached, so one replica collects at a time and another takes over where it ended",
    sql: `
      ALTER TABLE runtime_logs ADD COLUMN collector TEXT;
      ALTER TABLE runtime_logs ADD COLUMN collected_ms INTEGER;
      ALTER TABLE runtime_logs ADD COLUMN stdout_offset INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE runtime_logs ADD COLUMN stderr_offset INTEGER NOT NULL DEFAULT 0;
    `,
  },
]

/** The schema version this code writes and understands. */
export const latestSchemaVersion: number = migrations.at(-1)?.version ?? 0

const readVersion = (db: DatabaseSync): number => Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version)

/**
 * Brings `db` to `latestSchemaVersion` and returns it. A database written by a newer codebox is
 * refused (Unavailable) rather than guessed at. The version is read again inside each transaction,
 * so two processes opening the same file at once apply each migration exactly once.
 */
export function migrate(db: DatabaseSync, list: readonly Migration[] = migrations): number {
  const latest = list.at(-1)?.version ?? 0
  list.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${i + 1} has version ${m.version}; versions must be 1, 2, 3, … without gaps`)
  })
  const refuseNewer = (found: number) => {
    if (found > latest) {
      throw new CodeboxError(
        'Unavailable',
        `The database is from a newer codebox (schema version ${found}; this codebox knows up to ${latest}). Upgrade codebox or point it at another database.`,
        { details: { schemaVersion: found, supportedVersion: latest } },
      )
    }
  }
  const start = readVersion(db)
  refuseNewer(start)
  for (const m of list) {
    if (m.version <= start) continue
    transaction(db, () => {
      const current = readVersion(db)
      refuseNewer(current)
      if (current >= m.version) return
      db.exec(m.sql)
      // PRAGMA takes no bound parameters; the version is an integer from the list above.
      db.exec(`PRAGMA user_version = ${m.version}`)
    })
  }
  return readVersion(db)
}
