/**
 * Prometheus metrics of one server (its own registry, so tests can run several servers in one
 * process): sessions by state, starts and ends, invocations by tool/language/outcome, durations
 * as histograms, the warm pool, limit kills, egress decisions, HTTP requests, and agent turns, tokens
 * and model fallbacks, and the model gateway's traffic per provider and runtime. Served at GET /metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { GatewayUsage, GatewayUsageRow } from './services/gateway.ts'

export interface MetricsSource {
  liveSessions: () => number
  startingSessions: () => number
  warmSandboxes: () => number
  /** Egress proxy decisions since start (sessions of PUBLIC and VPC interpreters). */
  egressRequests: () => { allowed: number; denied: number }
  /** Model gateway totals per provider and runtime (the session's tag). Default none. */
  gatewayUsage?: () => readonly GatewayUsageRow[]
  /** Runtime sessions of hosted agents alive now that this server counts (RuntimeSessions.counted), by runtime id. */
  runtimeSessions?: () => ReadonlyMap<string, number>
}

export class Metrics {
  readonly registry = new Registry()
  readonly sessionStarts = new Counter({
    name: 'codebox_session_starts_total',
    help: 'Session starts by outcome (ok, rejected, failed).',
    labelNames: ['outcome'],
    registers: [this.registry],
  })
  readonly sessionEnds = new Counter({
    name: 'codebox_session_ends_total',
    help: 'Sessions ended, by reason.',
    labelNames: ['reason'],
    registers: [this.registry],
  })
  readonly startDuration = new Histogram({
    name: 'codebox_session_start_duration_seconds',
    help: 'Time to start a session (pool hand-over or boot).',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  })
  readonly invocations = new Counter({
    name: 'codebox_invocations_total',
    help: 'Tool invocations by tool, language and outcome (ok, error, limit, rejected, failed).',
    labelNames: ['tool', 'language', 'outcome'],
    registers: [this.registry],
  })
  readonly invokeDuration = new Histogram({
    name: 'codebox_invocation_duration_seconds',
    help: 'Wall time of tool invocations.',
    labelNames: ['tool'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  })
  readonly limitKills = new Counter({
    name: 'codebox_limit_kills_total',
    help: 'Calls cut short by a limit (OOM, TIMEOUT, OUTPUT_TRUNCATED, PIDS).',
    labelNames: ['limit'],
    registers: [this.registry],
  })
  readonly httpRequests = new Counter({
    name: 'codebox_http_requests_total',
    help: 'HTTP requests by method, route and status.',
    labelNames: ['method', 'route', 'status'],
    registers: [this.registry],
  })
  readonly httpDuration = new Histogram({
    name: 'codebox_http_request_duration_seconds',
    help: 'HTTP request duration until the response is complete.',
    labelNames: ['method', 'route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  })

  readonly agentTurns = new Counter({
    name: 'codebox_agent_turns_total',
    help: 'Agent turns by role (answer, generate) and outcome (ok, error, canceled, rejected).',
    labelNames: ['role', 'outcome'],
    registers: [this.registry],
  })
  readonly agentTokens = new Counter({
    name: 'codebox_agent_tokens_total',
    help: 'Model tokens spent by agent turns, by model (provider:model) and direction (input, output).',
    labelNames: ['model', 'direction'],
    registers: [this.registry],
  })
  readonly agentFallbacks = new Counter({
    name: 'codebox_agent_model_fallbacks_total',
    help: 'Models skipped for the next one of the chain, by model and reason (throttled, overloaded, server-error, timeout, unreachable, refused, cooling-down, other).',
    labelNames: ['model', 'reason'],
    registers: [this.registry],
  })
  readonly runtimeInvocations = new Counter({
    name: 'codebox_runtime_invocations_total',
    help: 'Invocations of hosted agents, by runtime id and outcome (ok: the agent answered below 500; agent-error: RuntimeClientError; rejected: the service refused it).',
    labelNames: ['runtime', 'outcome'],
    registers: [this.registry],
  })
  readonly runtimeInvokeDuration = new Histogram({
    name: 'codebox_runtime_invocation_head_seconds',
    help: 'Time from an invocation of a hosted agent to its answer’s head (a new runtime session’s start included), by runtime id.',
    labelNames: ['runtime'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  })
  readonly runtimeSessionEnds = new Counter({
    name: 'codebox_runtime_sessions_ended_total',
    help: 'Runtime sessions of hosted agents that ended, by runtime id and reason.',
    labelNames: ['runtime', 'reason'],
    registers: [this.registry],
  })
  readonly agentTurnDuration = new Histogram({
    name: 'codebox_agent_turn_duration_seconds',
    help: 'Wall time of agent turns, by role.',
    labelNames: ['role'],
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
    registers: [this.registry],
  })

  constructor(source: MetricsSource) {
    const registers = [this.registry]
    new Gauge({
      name: 'codebox_sessions',
      help: 'Sessions by state (starting, ready).',
      labelNames: ['state'],
      registers,
      collect() {
        this.set({ state: 'starting' }, source.startingSessions())
        this.set({ state: 'ready' }, source.liveSessions())
      },
    })
    new Gauge({
      name: 'codebox_runtime_sessions',
      help: 'Runtime sessions of hosted agents alive now whose agent this server collects the output of (with replicas, one each: sum over replicas), by runtime id.',
      labelNames: ['runtime'],
      registers,
      collect() {
        this.reset()
        for (const [runtime, n] of source.runtimeSessions?.() ?? []) this.set({ runtime }, n)
      },
    })
    new Gauge({
      name: 'codebox_pool_warm_sandboxes',
      help: 'Warm sandboxes ready for hand-over.',
      registers,
      collect() {
        this.set(source.warmSandboxes())
      },
    })
    new Counter({
      name: 'codebox_egress_requests_total',
      help: 'Connections sandboxes asked the egress proxy for, by outcome (allowed, denied).',
      labelNames: ['outcome'],
      registers,
      collect() {
        const c = source.egressRequests()
        this.reset()
        this.inc({ outcome: 'allowed' }, c.allowed)
        this.inc({ outcome: 'denied' }, c.denied)
      },
    })
    const rows = (): readonly GatewayUsageRow[] => source.gatewayUsage?.() ?? []
    const gatewayCounter = (name: string, help: string, field: keyof GatewayUsage): void => {
      new Counter({
        name,
        help,
        labelNames: ['provider', 'runtime'],
        registers,
        collect() {
          this.reset()
          for (const r of rows()) this.inc({ provider: r.provider, runtime: r.runtime }, r.usage[field])
        },
      })
    }
    gatewayCounter('codebox_gateway_requests_total', 'Model gateway requests by provider and runtime (the session tag; empty for none).', 'requests')
    gatewayCounter('codebox_gateway_errors_total', 'Model gateway requests that failed: refused, upstream 4xx/5xx, unreachable or cut off.', 'errors')
    gatewayCounter('codebox_gateway_request_bytes_total', 'Request body bytes sandboxes sent through the model gateway.', 'requestBytes')
    gatewayCounter('codebox_gateway_response_bytes_total', 'Response body bytes the model gateway passed back.', 'responseBytes')
    new Counter({
      name: 'codebox_gateway_tokens_total',
      help: 'Model tokens the gateway saw responses report, by provider, runtime and direction (input, output).',
      labelNames: ['provider', 'runtime', 'direction'],
      registers,
      collect() {
        this.reset()
        for (const r of rows()) {
          this.inc({ provider: r.provider, runtime: r.runtime, direction: 'input' }, r.usage.inputTokens)
          this.inc({ provider: r.provider, runtime: r.runtime, direction: 'output' }, r.usage.outputTokens)
        }
      },
    })
    collectDefaultMetrics({ register: this.registry, prefix: 'codebox_process_' })
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }
}
