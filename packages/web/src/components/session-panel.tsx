/** The Session panel: the tab's session, its state and remaining time, New session and Stop session. */
import Box from '@cloudscape-design/components/box'
import Button from '@cloudscape-design/components/button'
import Container from '@cloudscape-design/components/container'
import Header from '@cloudscape-design/components/header'
import KeyValuePairs from '@cloudscape-design/components/key-value-pairs'
import StatusIndicator from '@cloudscape-design/components/status-indicator'
import SpaceBetween from '@cloudscape-design/components/space-between'
import { useEffect, useState } from 'react'
import { formatRemaining, type SessionState } from '../session.ts'

export interface SessionPanelProps {
  state: SessionState
  onNew: () => void
  onStop: () => void
}

export function SessionPanel({ state, onNew, onStop }: SessionPanelProps) {
  const [now, setNow] = useState(Date.now())
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000)
    return () => clearInterval(timer)
  }, [])
  const info = state.info
  const ready = info?.status === 'READY'
  const remaining = info?.expiresAt ? Date.parse(info.expiresAt) - now : undefined
  const lifetimeLeft = info && ready ? Date.parse(info.createdAt) + info.limits.maxLifetimeMs - now : undefined
  return (
    <Container
      header={
        <Header
          variant="h2"
          actions={
            <SpaceBetween direction="horizontal" size="xs">
              <Button onClick={onNew} loading={state.busy} ariaLabel="New session">
                New session
              </Button>
              <Button onClick={onStop} disabled={!ready || state.busy} ariaLabel="Stop session">
                Stop session
              </Button>
            </SpaceBetween>
          }
        >
          Session
        </Header>
      }
    >
      {state.error ? <Box color="text-status-error">{state.error}</Box> : null}
      {info ? (
        <KeyValuePairs
          columns={2}
          items={[
            {
              label: 'Status',
              value: ready ? (
                <StatusIndicator type="success">Ready</StatusIndicator>
              ) : (
                <StatusIndicator type="stopped">Ended{info.endReason ? ` (${info.endReason})` : ''}</StatusIndicator>
              ),
            },
            { label: 'Session', value: <span data-testid="session-id">{info.sessionId}</span> },
            {
              label: 'Ends if idle in',
              value: remaining !== undefined ? <span data-testid="remaining">{formatRemaining(remaining)}</span> : '—',
            },
            { label: 'Lifetime left', value: lifetimeLeft !== undefined ? formatRemaining(lifetimeLeft) : '—' },
            { label: 'Memory', value: `${Math.round(info.limits.memoryBytes / 2 ** 20)} MiB` },
            { label: 'Call timeout', value: `${Math.round(info.limits.callTimeoutMs / 1000)} s` },
          ]}
        />
      ) : (
        <StatusIndicator type="loading">Starting a session…</StatusIndicator>
      )}
    </Container>
  )
}
