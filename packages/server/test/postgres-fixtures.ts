/**
 * A private PostgreSQL server for one test file: Debian's binaries (the `postgresql` package),
 * `initdb` run as the `postgres` system user (it refuses root) in a new temporary directory, the
 * server listening on a unix socket in that directory only (no TCP), stopped by its pid when the
 * file's tests end. Each caller gets a database of its own (`database()`), so tests do not share
 * state. When the binaries are missing, `postgresSkip` says why and the tests skip.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'

/** Debian's PostgreSQL binaries: the newest installed major version. */
function findBinDir(): string | undefined {
  const root = '/usr/lib/postgresql'
  let versions: string[]
  try {
    versions = fs.readdirSync(root).filter((v) => /^\d+$/.test(v))
  } catch {
    return undefined
  }
  for (const v of versions.sort((a, b) => Number(b) - Number(a))) {
    const dir = path.join(root, v, 'bin')
    if (fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'postgres')) && fs.existsSync(path.join(dir, 'pg_ctl'))) return dir
  }
  return undefined
}

const binDir = findBinDir()
const asRoot = process.getuid?.() === 0
const postgresUser = asRoot && spawnSync('id', ['-u', 'postgres'], { stdio: 'ignore' }).status === 0

/** Why the PostgreSQL tests cannot run here, or false when they can. */
export const postgresSkip: string | false = !binDir
  ? 'PostgreSQL is not installed (/usr/lib/postgresql/<version>/bin/initdb; Debian package postgresql)'
  : asRoot && !postgresUser
    ? 'initdb refuses root and there is no postgres system user to run it as'
    : false

export interface PostgresServer {
  /** The directory holding the cluster and its socket. */
  dir: string
  /** The server's pid (postmaster.pid); a new one after `resume()`. */
  readonly pid: number
  /** A URI of database `name` on this server (`postgresql:///name?host=<socket dir>&user=postgres`). */
  uri(name: string): string
  /** Creates a new empty database and returns its URI. */
  database(prefix?: string): Promise<string>
  /** Runs SQL as the superuser in database `name`. */
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(name: string, text: string, values?: unknown[]): Promise<T[]>
  /** Stops the server for a while (fast shutdown), keeping its data: clients find it unreachable. */
  halt(): Promise<void>
  /** Starts a halted server again on the same data and socket. */
  resume(): Promise<void>
  /** Stops the server (SIGINT: fast shutdown) and removes its directory. */
  stop(): Promise<void>
}

/** Runs a PostgreSQL binary as the postgres user (root) or as ourselves. */
function runPg(bin: string, args: string[]): { status: number | null; output: string } {
  const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', path.join(binDir!, bin), ...args]] : [path.join(binDir!, bin), args]
  const r = spawnSync(cmd as string, argv as string[], { encoding: 'utf8', timeout: 120_000 })
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Starts a private PostgreSQL server; call `stop()` when done (an exit of the process stops it too). */
export async function startPostgres(): Promise<PostgresServer> {
  if (postgresSkip) throw new Error(postgresSkip)
  // Short: the socket path (<dir>/.s.PGSQL.5432) must fit in 107 bytes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbx-pg-'))
  fs.chmodSync(dir, 0o755)
  const data = path.join(dir, 'data')
  if (asRoot) spawnSync('chown', ['postgres:postgres', dir])
  const init = runPg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C.UTF-8', '--no-sync'])
  if (init.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true })
    throw new Error(`initdb failed (${init.status}): ${init.output}`)
  }
  const options = `-k ${dir} -c listen_addresses= -c fsync=off -c max_connections=200 -c shared_buffers=16MB`
  const launch = (): number => {
    const start = runPg('pg_ctl', ['-D', data, '-l', path.join(dir, 'server.log'), '-o', options, '-w', '-t', '60', 'start'])
    if (start.status !== 0) {
      const log = fs.existsSync(path.join(dir, 'server.log')) ? fs.readFileSync(path.join(dir, 'server.log'), 'utf8') : ''
      throw new Error(`PostgreSQL did not start (${start.status}): ${start.output}\n${log}`)
    }
    return Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
  }
  let pid: number
  try {
    pid = launch()
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true })
    throw e
  }
  const onExit = (): void => {
    if (alive(pid)) process.kill(pid, 'SIGQUIT')
  }
  process.once('exit', onExit)
  /** Fast shutdown of the server by its pid, waiting until it is gone. */
  const shutdown = async (): Promise<void> => {
    if (alive(pid)) process.kill(pid, 'SIGINT')
    const deadline = Date.now() + 30_000
    while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    if (alive(pid)) process.kill(pid, 'SIGKILL')
  }
  const uri = (name: string): string => `postgresql:///${name}?host=${encodeURIComponent(dir)}&user=postgres`
  const sql = async <T extends pg.QueryResultRow>(name: string, text: string, values: unknown[] = []): Promise<T[]> => {
    const client = new pg.Client({ connectionString: uri(name) })
    await client.connect()
    try {
      return (await client.query<T>(text, values)).rows
    } finally {
      await client.end()
    }
  }
  let stopped: Promise<void> | undefined
  return {
    dir,
    get pid() {
      return pid
    },
    uri,
    sql,
    database: async (prefix = 'test') => {
      const name = `${prefix}_${randomBytes(6).toString('hex')}`
      await sql('postgres', `CREATE DATABASE ${name}`)
      return uri(name)
    },
    halt: shutdown,
    resume: async () => {
      pid = launch()
    },
    stop: () =>
      (stopped ??= (async () => {
        process.off('exit', onExit)
        await shutdown()
        fs.rmSync(dir, { recursive: true, force: true })
      })()),
  }
}
