/**
 * The Generate tab: a chat with the codebox agent through the SDK's AgentClient. "Ask" streams the
 * agent's text, its tool calls (code and results) and its final answer; "Generate code" streams
 * code for the editor. Every code block has "Open in editor". Which model answered, and the ones
 * skipped, are shown; without a configured model the tab shows the server's hint.
 */
import Alert from '@cloudscape-design/components/alert'
import Box from '@cloudscape-design/components/box'
import Button from '@cloudscape-design/components/button'
import Container from '@cloudscape-design/components/container'
import Header from '@cloudscape-design/components/header'
import FormField from '@cloudscape-design/components/form-field'
import SegmentedControl from '@cloudscape-design/components/segmented-control'
import Select from '@cloudscape-design/components/select'
import Toggle from '@cloudscape-design/components/toggle'
import SpaceBetween from '@cloudscape-design/components/space-between'
import StatusIndicator from '@cloudscape-design/components/status-indicator'
import Textarea from '@cloudscape-design/components/textarea'
import { useEffect, useRef, useState } from 'react'
import type { AgentEvent, AgentStatus, Language } from '@codebox/sdk'
import { agent } from '../connection.ts'

/** One prompt and what came back. */
export interface ChatTurn {
  prompt: string
  role: 'answer' | 'generate'
  events: AgentEvent[]
  running?: boolean
}

/** The conversation the tab shows (the app keeps it, so History can reopen one). */
export interface Chat {
  conversationId?: string
  turns: ChatTurn[]
}

export interface GenerateTabProps {
  chat: Chat
  onChat: (update: (chat: Chat) => Chat) => void
  language: Language
  onOpenInEditor: (code: string, language?: string) => void
  /** The IDE's own session (started when needed): an answer's code runs there, with its files and variables, unless the user turns that off. */
  ensureSession: () => Promise<string | undefined>
  /** After each turn (the files panel lists again: the agent may have written files). */
  onTurnEnd?: () => void
}

/** The model picker's "no choice" entry: the chain's own order. */
const chainOrder = { value: '', label: 'Chain order (fallbacks as configured)' }

const codeFence = /```(\w+)?\n([\s\S]*?)```/g
const pre = { margin: 0, whiteSpace: 'pre-wrap', wordBreak: 'break-word', fontFamily: 'monospace', fontSize: 13 } as const

/** Text with its fenced code blocks shown as code, each with "Open in editor". */
function RichText({ text, onOpen }: { text: string; onOpen: (code: string, language?: string) => void }) {
  const parts: React.ReactNode[] = []
  let last = 0
  for (const m of text.matchAll(codeFence)) {
    if (m.index > last)
      parts.push(
        <span key={`t${last}`} style={{ whiteSpace: 'pre-wrap' }}>
          {text.slice(last, m.index)}
        </span>,
      )
    // The newline before the closing fence belongs to the fence, not to the code.
    const code = (m[2] ?? '').replace(/\n$/, '')
    const lang = m[1]
    parts.push(<CodeBlock key={`c${m.index}`} code={code} language={lang} onOpen={onOpen} />)
    last = m.index + m[0].length
  }
  if (last < text.length)
    parts.push(
      <span key={`t${last}`} style={{ whiteSpace: 'pre-wrap' }}>
        {text.slice(last)}
      </span>,
    )
  return <div>{parts}</div>
}

function CodeBlock({ code, language, onOpen }: { code: string; language?: string | undefined; onOpen: (code: string, language?: string) => void }) {
  return (
    <Box padding="xs" variant="div">
      <div style={{ background: '#f4f4f4', padding: 8, borderRadius: 4 }}>
        <pre style={pre}>{code}</pre>
      </div>
      <Button variant="inline-link" iconName="external" onClick={() => onOpen(code, language)} ariaLabel="Open in editor">
        Open in editor
      </Button>
    </Box>
  )
}

/** The events of a turn grouped for display: merged text, and each tool call with its output and result. */
function TurnView({ turn, onOpen }: { turn: ChatTurn; onOpen: (code: string, language?: string) => void }) {
  const nodes: React.ReactNode[] = []
  let text = ''
  const flush = (key: string) => {
    if (text) nodes.push(<RichText key={key} text={text} onOpen={onOpen} />)
    text = ''
  }
  const outputs = new Map<string, string>()
  for (const e of turn.events) if (e.type === 'tool_output') outputs.set(e.toolUseId, (outputs.get(e.toolUseId) ?? '') + e.text)
  turn.events.forEach((e, i) => {
    switch (e.type) {
      case 'text':
        text += e.delta
        break
      case 'model':
        flush(`f${i}`)
        nodes.push(
          <Box key={i} variant="small" color="text-body-secondary">
            Model: {e.model}
            {e.skipped.length ? ` (skipped: ${e.skipped.map((s) => `${s.model} — ${s.reason}`).join('; ')})` : ''}
          </Box>,
        )
        break
      case 'tool_use': {
        flush(`f${i}`)
        const result = turn.events.find((r): r is Extract<AgentEvent, { type: 'tool_result' }> => r.type === 'tool_result' && r.toolUseId === e.toolUseId)
        nodes.push(
          <Container key={i} variant="stacked" header={<Header variant="h3">Tool call: {e.name}</Header>}>
            {e.code !== undefined ? (
              <CodeBlock code={e.code} language={e.language} onOpen={onOpen} />
            ) : (
              <pre style={pre}>{JSON.stringify(e.input, null, 2)}</pre>
            )}
            {outputs.get(e.toolUseId) && !result ? <pre style={pre}>{outputs.get(e.toolUseId)}</pre> : null}
            {result ? (
              <SpaceBetween size="xs">
                <StatusIndicator type={result.isError ? 'error' : 'success'}>{result.isError ? 'Failed' : 'Done'}</StatusIndicator>
                <pre style={pre}>{result.text}</pre>
                {result.images.map((img, k) => (
                  <img key={k} alt={`Chart from ${e.name}`} src={`data:${img.mimeType};base64,${img.data}`} style={{ maxWidth: '100%' }} />
                ))}
              </SpaceBetween>
            ) : (
              <StatusIndicator type="in-progress">Running</StatusIndicator>
            )}
          </Container>,
        )
        break
      }
      case 'final': {
        // The text streamed since the last tool call is the answer itself: show it once, in the Answer box.
        if (text.trim() === e.text.trim()) text = ''
        else flush(`f${i}`)
        const skipped = [...new Set(e.skipped.map((s) => s.model))]
        nodes.push(
          <Container
            key={i}
            header={
              <Header variant="h3" description={`Answered by ${e.model}${skipped.length ? `; skipped ${skipped.join(', ')}` : ''}`}>
                Answer
              </Header>
            }
          >
            {e.code !== undefined && !e.text.includes('```') ? (
              <CodeBlock code={e.code} language={e.language} onOpen={onOpen} />
            ) : (
              <RichText text={e.text} onOpen={onOpen} />
            )}
          </Container>,
        )
        break
      }
      case 'error':
        flush(`f${i}`)
        nodes.push(
          <Alert key={i} type="error" header={e.code}>
            {e.message}
          </Alert>,
        )
        break
      case 'turn_start':
      case 'tool_output':
      case 'tool_result':
        break
    }
  })
  flush('end')
  return (
    <SpaceBetween size="s">
      <Box variant="p">
        <b>You{turn.role === 'generate' ? ' (generate code)' : ''}:</b> {turn.prompt}
      </Box>
      {nodes}
      {turn.running ? <StatusIndicator type="loading">Working…</StatusIndicator> : null}
    </SpaceBetween>
  )
}

/** The picker's options: the chain's order, then each configured model with how it fared. */
function modelOptions(status: AgentStatus | undefined): { value: string; label: string; description?: string }[] {
  return [
    chainOrder,
    ...(status?.models ?? []).map((m) => ({
      value: m.model,
      label: m.model,
      description:
        m.state === 'cooling-down'
          ? `cooling down${m.lastError ? `: ${m.lastError}` : ''}`
          : m.state === 'ok'
            ? 'answered last time it was asked'
            : 'not asked yet',
    })),
  ]
}

export function GenerateTab({ chat, onChat, language, onOpenInEditor, ensureSession, onTurnEnd }: GenerateTabProps) {
  const [status, setStatus] = useState<AgentStatus | undefined>()
  const [statusError, setStatusError] = useState<string | undefined>()
  const [prompt, setPrompt] = useState('')
  const [mode, setMode] = useState<'answer' | 'generate'>('answer')
  const [model, setModel] = useState('')
  const [inIdeSession, setInIdeSession] = useState(true)
  const abort = useRef<AbortController | undefined>(undefined)
  const running = chat.turns.some((t) => t.running)

  /** Reads the model chain's state: on opening the tab and after each turn (a model may now be cooling down). */
  const refreshStatus = () =>
    agent()
      .status()
      .then(
        (s) => {
          setStatus(s)
          setStatusError(undefined)
        },
        (e: unknown) => setStatusError(e instanceof Error ? e.message : String(e)),
      )
  useEffect(() => {
    void refreshStatus()
  }, [])

  const update = (index: number, change: (t: ChatTurn) => ChatTurn) => onChat((c) => ({ ...c, turns: c.turns.map((t, i) => (i === index ? change(t) : t)) }))

  const send = async () => {
    const text = prompt.trim()
    if (!text || running) return
    setPrompt('')
    const index = chat.turns.length
    onChat((c) => ({ ...c, turns: [...c.turns, { prompt: text, role: mode, events: [], running: true }] }))
    const controller = new AbortController()
    abort.current = controller
    try {
      // A model that is no longer in the chain (the server restarted with another) is not sent.
      const chosen = model && status?.models.some((m) => m.model === model) ? { model } : {}
      const options = { ...(chat.conversationId ? { conversationId: chat.conversationId } : {}), ...chosen, signal: controller.signal }
      let events
      if (mode === 'generate') events = agent().generateStream(text, { ...options, language })
      else {
        const sessionId = inIdeSession ? await ensureSession() : undefined
        events = agent().ask(text, { ...options, ...(sessionId ? { sessionId } : {}) })
      }
      for await (const event of events) {
        if (event.type === 'turn_start') onChat((c) => ({ ...c, conversationId: event.conversationId }))
        update(index, (t) => ({ ...t, events: [...t.events, event] }))
      }
    } catch (e) {
      const message = controller.signal.aborted ? 'stopped by you' : e instanceof Error ? e.message : String(e)
      update(index, (t) => ({
        ...t,
        events: [...t.events, { type: 'error', code: controller.signal.aborted ? 'Canceled' : ((e as { code?: string }).code ?? 'Error'), message }],
      }))
    } finally {
      abort.current = undefined
      update(index, (t) => ({ ...t, running: false }))
      void refreshStatus()
      onTurnEnd?.()
    }
  }

  return (
    <SpaceBetween size="l">
      {statusError ? (
        <Alert type="warning" header="The agent is not available">
          {statusError}
        </Alert>
      ) : status && !status.configured ? (
        <Alert type="info" header="No model is configured">
          {status.hint ?? 'Set CODEBOX_AGENT_MODELS on the server to use the agent.'}
        </Alert>
      ) : status ? (
        <Box variant="small">
          Models: {status.models.map((m) => `${m.model} (${m.state})`).join(' → ')}
          {status.lastAnswered ? ` · last answered by ${status.lastAnswered.model}` : ''}
        </Box>
      ) : null}
      <Container
        header={
          <Header
            variant="h2"
            description={chat.conversationId ? `Conversation ${chat.conversationId}` : 'A new conversation'}
            actions={
              <Button onClick={() => onChat(() => ({ turns: [] }))} disabled={running} ariaLabel="New conversation">
                New conversation
              </Button>
            }
          >
            Generate
          </Header>
        }
      >
        <section aria-label="Conversation" aria-live="polite">
          <SpaceBetween size="l">
            {chat.turns.length === 0 ? <Box color="text-status-inactive">Ask for an analysis, or for code to edit.</Box> : null}
            {chat.turns.map((t, i) => (
              <TurnView key={i} turn={t} onOpen={onOpenInEditor} />
            ))}
          </SpaceBetween>
        </section>
      </Container>
      <Container>
        <SpaceBetween size="s">
          <SpaceBetween direction="horizontal" size="l" alignItems="end">
            <FormField label="Model">
              <Select
                selectedOption={modelOptions(status).find((o) => o.value === model) ?? chainOrder}
                onChange={(e) => setModel(e.detail.selectedOption.value ?? '')}
                options={modelOptions(status)}
                ariaLabel="Model"
                disabled={!status?.configured}
              />
            </FormField>
            {mode === 'answer' ? (
              <Toggle checked={inIdeSession} onChange={(e) => setInIdeSession(e.detail.checked)} ariaLabel="Run code in this IDE's session">
                Run code in this IDE’s session (its files and variables)
              </Toggle>
            ) : null}
          </SpaceBetween>
          <SegmentedControl
            selectedId={mode}
            label="Mode"
            options={[
              { id: 'answer', text: 'Ask (runs code, answers)' },
              { id: 'generate', text: 'Generate code' },
            ]}
            onChange={(e) => setMode(e.detail.selectedId as 'answer' | 'generate')}
          />
          <Textarea
            value={prompt}
            onChange={(e) => setPrompt(e.detail.value)}
            onKeyDown={(e) => {
              if ((e.detail.ctrlKey || e.detail.metaKey) && e.detail.key === 'Enter') void send()
            }}
            placeholder="e.g. Load data.csv and plot the monthly totals"
            ariaLabel="Prompt"
            rows={3}
            disabled={status !== undefined && !status.configured}
          />
          <SpaceBetween direction="horizontal" size="xs">
            <Button variant="primary" onClick={() => void send()} disabled={running || !prompt.trim()} ariaLabel="Send">
              Send
            </Button>
            <Button onClick={() => abort.current?.abort()} disabled={!running} ariaLabel="Stop answer">
              Stop
            </Button>
          </SpaceBetween>
        </SpaceBetween>
      </Container>
    </SpaceBetween>
  )
}
