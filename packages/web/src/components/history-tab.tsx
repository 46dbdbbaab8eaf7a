/**
 * The History tab: the agent's conversations from the server (reopened in the Generate tab, or
 * deleted with their memory) and the editor cells run in this browser on this server (reopened in
 * the editor).
 */
import Alert from '@cloudscape-design/components/alert'
import Box from '@cloudscape-design/components/box'
import Button from '@cloudscape-design/components/button'
import Header from '@cloudscape-design/components/header'
import SpaceBetween from '@cloudscape-design/components/space-between'
import StatusIndicator from '@cloudscape-design/components/status-indicator'
import Table from '@cloudscape-design/components/table'
import { useCallback, useEffect, useState } from 'react'
import type { Conversation } from '@codebox/sdk'
import { agent } from '../connection.ts'
import type { CellRecord } from '../history.ts'

export interface HistoryTabProps {
  cells: CellRecord[]
  onOpenCell: (cell: CellRecord) => void
  onOpenConversation: (conversationId: string) => void
  onClearCells: () => void
}

const firstLine = (code: string): string => {
  const line = code.split('\n').find((l) => l.trim() !== '') ?? ''
  return line.length > 80 ? `${line.slice(0, 77)}…` : line
}

export function HistoryTab({ cells, onOpenCell, onOpenConversation, onClearCells }: HistoryTabProps) {
  const [conversations, setConversations] = useState<Conversation[]>([])
  const [error, setError] = useState<string | undefined>()
  const [loading, setLoading] = useState(false)
  const load = useCallback(async () => {
    setLoading(true)
    try {
      const all: Conversation[] = []
      for await (const c of agent().allConversations()) all.push(c)
      setConversations(all)
      setError(undefined)
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e))
    } finally {
      setLoading(false)
    }
  }, [])
  useEffect(() => {
    void load()
  }, [load])
  /** Removes a conversation and its memory on the server, then lists again. */
  const remove = async (conversationId: string) => {
    try {
      await agent().deleteConversation(conversationId)
      await load()
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e))
    }
  }
  return (
    <SpaceBetween size="l">
      <Table
        header={
          <Header
            variant="h2"
            counter={`(${cells.length})`}
            actions={
              <Button onClick={onClearCells} ariaLabel="Clear cell history">
                Clear
              </Button>
            }
          >
            Editor cells (this browser)
          </Header>
        }
        ariaLabels={{ tableLabel: 'Editor cells' }}
        items={cells}
        trackBy="id"
        empty={<Box color="text-status-inactive">No cells run yet</Box>}
        columnDefinitions={[
          { id: 'at', header: 'Ran at', cell: (c) => new Date(c.ranAt).toLocaleString() },
          { id: 'language', header: 'Language', cell: (c) => c.language },
          { id: 'code', header: 'Code', cell: (c) => <code data-testid="cell-code">{firstLine(c.code)}</code> },
          {
            id: 'outcome',
            header: 'Outcome',
            cell: (c) => (
              <StatusIndicator type={c.outcome === 'ok' ? 'success' : c.outcome === 'stopped' ? 'stopped' : 'error'}>
                {c.outcome}
                {c.executionTimeMs !== undefined ? ` · ${(c.executionTimeMs / 1000).toFixed(2)} s` : ''}
              </StatusIndicator>
            ),
          },
          {
            id: 'open',
            header: 'Open',
            cell: (c) => (
              <Button variant="inline-link" onClick={() => onOpenCell(c)} ariaLabel={`Open cell from ${new Date(c.ranAt).toLocaleTimeString()} in editor`}>
                Open in editor
              </Button>
            ),
          },
        ]}
      />
      {error && conversations.length > 0 ? (
        <Alert type="error" header="Conversations">
          {error}
        </Alert>
      ) : null}
      <Table
        header={
          <Header
            variant="h2"
            counter={`(${conversations.length})`}
            actions={<Button iconName="refresh" onClick={() => void load()} loading={loading} ariaLabel="Refresh conversations" />}
          >
            Conversations (server)
          </Header>
        }
        ariaLabels={{ tableLabel: 'Conversations' }}
        items={conversations}
        trackBy="conversationId"
        empty={<Box color="text-status-inactive">{error ?? 'No conversations yet'}</Box>}
        columnDefinitions={[
          { id: 'title', header: 'Title', cell: (c) => c.title },
          { id: 'turns', header: 'Turns', cell: (c) => c.turns },
          { id: 'updated', header: 'Last updated', cell: (c) => new Date(c.lastUpdatedAt).toLocaleString() },
          {
            id: 'open',
            header: 'Open',
            cell: (c) => (
              <Button variant="inline-link" onClick={() => onOpenConversation(c.conversationId)} ariaLabel={`Open conversation ${c.title}`}>
                Open
              </Button>
            ),
          },
          {
            id: 'delete',
            header: 'Delete',
            cell: (c) => (
              <Button variant="inline-link" onClick={() => void remove(c.conversationId)} ariaLabel={`Delete conversation ${c.title}`}>
                Delete
              </Button>
            ),
          },
        ]}
      />
    </SpaceBetween>
  )
}
