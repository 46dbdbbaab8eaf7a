/**
 * The IDE: tabs for Generate (the agent), the Code editor (with its results) and History, beside
 * the Session and Files panels. The editor's code and language survive a reload (sessionStorage);
 * the tab's session is its own; the cells run are kept per server in localStorage.
 */
import Box from '@cloudscape-design/components/box'
import ContentLayout from '@cloudscape-design/components/content-layout'
import Grid from '@cloudscape-design/components/grid'
import Header from '@cloudscape-design/components/header'
import Link from '@cloudscape-design/components/link'
import SpaceBetween from '@cloudscape-design/components/space-between'
import Tabs from '@cloudscape-design/components/tabs'
import { useCallback, useState } from 'react'
import type { Language } from '@codebox/sdk'
import { agent, setApiKey } from './connection.ts'
import { clearCells, loadCells, type CellRecord } from './history.ts'
import { useRunner } from './run.ts'
import { useSession } from './session.ts'
import { AuthModal } from './components/auth-modal.tsx'
import { CodeTab } from './components/code-tab.tsx'
import { FilesPanel } from './components/files-panel.tsx'
import { GenerateTab, type Chat } from './components/generate-tab.tsx'
import { HistoryTab } from './components/history-tab.tsx'
import { SessionPanel } from './components/session-panel.tsx'

const languages: readonly string[] = ['python', 'javascript', 'typescript']
const draftItem = 'codebox.draft'
const starter = `import pandas as pd
import matplotlib.pyplot as plt

df = pd.DataFrame({"month": ["Jan", "Feb", "Mar"], "sales": [120, 150, 90]})
print(df.describe())
df.plot(x="month", y="sales", kind="bar")
plt.show()
df
`

function loadDraft(): { code: string; language: Language } {
  try {
    const d = JSON.parse(sessionStorage.getItem(draftItem) ?? 'null') as { code?: unknown; language?: unknown } | null
    if (d && typeof d.code === 'string' && typeof d.language === 'string' && languages.includes(d.language))
      return { code: d.code, language: d.language as Language }
  } catch {
    // A broken draft is replaced by the starter.
  }
  return { code: starter, language: 'python' }
}

const tabIds = ['generate', 'code', 'history'] as const
type TabId = (typeof tabIds)[number]
const initialTab = (): TabId => {
  const h = location.hash.slice(1)
  return (tabIds as readonly string[]).includes(h) ? (h as TabId) : 'code'
}

export function App() {
  const session = useSession()
  const [draft, setDraft] = useState(loadDraft)
  const [tab, setTab] = useState<TabId>(initialTab)
  const [cells, setCells] = useState<CellRecord[]>(loadCells)
  const [chat, setChat] = useState<Chat>({ turns: [] })
  const [revision, setRevision] = useState(0)
  const onFinished = useCallback((next: CellRecord[]) => {
    setCells(next)
    setRevision((r) => r + 1)
  }, [])
  const { run, execute, stop } = useRunner(session.ensure, onFinished)

  const changeDraft = (next: { code: string; language: Language }) => {
    setDraft(next)
    sessionStorage.setItem(draftItem, JSON.stringify(next))
  }
  const selectTab = (id: TabId) => {
    setTab(id)
    history.replaceState(null, '', `#${id}`)
  }
  const openInEditor = (code: string, language?: string) => {
    const lang = language === 'js' ? 'javascript' : language === 'ts' ? 'typescript' : language === 'py' ? 'python' : language
    changeDraft({ code, language: lang && languages.includes(lang) ? (lang as Language) : draft.language })
    selectTab('code')
  }
  const openConversation = async (conversationId: string) => {
    try {
      const h = await agent().history(conversationId)
      setChat({ conversationId, turns: h.turns.map((t) => ({ prompt: t.prompt, role: t.role, events: t.events })) })
      selectTab('generate')
    } catch (e) {
      setChat({
        conversationId,
        turns: [{ prompt: '(history)', role: 'answer', events: [{ type: 'error', code: 'History', message: e instanceof Error ? e.message : String(e) }] }],
      })
    }
  }
  const runCell = useCallback(() => void execute(draft.code, draft.language), [execute, draft])
  const sessionReady = session.state.info?.status === 'READY' || !session.state.info

  return (
    <div style={{ padding: 20 }}>
      <ContentLayout
        header={
          <Header
            variant="h1"
            description="Generate, edit and run code in an isolated session on this server."
            actions={
              <Box padding={{ top: 's' }}>
                <Link href="/about">API and docs</Link>
              </Box>
            }
          >
            codebox
          </Header>
        }
      >
        <Grid gridDefinition={[{ colspan: { default: 12, l: 8 } }, { colspan: { default: 12, l: 4 } }]}>
          <Tabs
            activeTabId={tab}
            onChange={(e) => selectTab(e.detail.activeTabId as TabId)}
            ariaLabel="IDE"
            tabs={[
              {
                id: 'generate',
                label: 'Generate',
                content: (
                  <GenerateTab
                    chat={chat}
                    onChat={(u) => setChat(u)}
                    language={draft.language}
                    onOpenInEditor={openInEditor}
                    ensureSession={session.ensure}
                    onTurnEnd={() => setRevision((r) => r + 1)}
                  />
                ),
              },
              {
                id: 'code',
                label: 'Code editor',
                content: (
                  <CodeTab
                    code={draft.code}
                    language={draft.language}
                    onCode={(code) => changeDraft({ ...draft, code })}
                    onLanguage={(language) => changeDraft({ ...draft, language })}
                    run={run}
                    onRun={runCell}
                    onStop={stop}
                    onClearContext={() => void execute(draft.language === 'python' ? 'pass' : 'void 0', draft.language, { clearContext: true, record: false })}
                    {...(session.state.interpreter ? { interpreter: session.state.interpreter } : {})}
                    sessionReady={sessionReady}
                  />
                ),
              },
              {
                id: 'history',
                label: 'History',
                content: (
                  <HistoryTab
                    cells={cells}
                    onOpenCell={(c) => openInEditor(c.code, c.language)}
                    onOpenConversation={(id) => void openConversation(id)}
                    onClearCells={() => {
                      clearCells()
                      setCells([])
                    }}
                  />
                ),
              },
            ]}
          />
          <SpaceBetween size="l">
            <SessionPanel state={session.state} onNew={() => void session.start().then(() => setRevision((r) => r + 1))} onStop={() => void session.stop()} />
            <FilesPanel {...(session.state.info?.status === 'READY' ? { sessionId: session.state.info.sessionId } : {})} revision={revision} />
          </SpaceBetween>
        </Grid>
      </ContentLayout>
      <AuthModal
        visible={session.state.needsKey}
        error={session.state.error}
        onKey={(key) => {
          setApiKey(key)
          void session.ensure()
        }}
      />
    </div>
  )
}
