/**
 * The Code editor tab: language, Run (Ctrl/Cmd+Enter), Stop, Clear context, the session's
 * interpreter and network mode, and the results below the editor.
 */
import Box from '@cloudscape-design/components/box'
import Button from '@cloudscape-design/components/button'
import Container from '@cloudscape-design/components/container'
import Header from '@cloudscape-design/components/header'
import Select from '@cloudscape-design/components/select'
import SpaceBetween from '@cloudscape-design/components/space-between'
import Spinner from '@cloudscape-design/components/spinner'
import { lazy, Suspense, useEffect } from 'react'
import type { Interpreter, Language } from '@codebox/sdk'
import type { RunState } from '../run.ts'
import { Results } from './results.tsx'

const CodeEditor = lazy(() => import('./code-editor.tsx'))

const languageOptions = [
  { value: 'python', label: 'Python' },
  { value: 'javascript', label: 'JavaScript' },
  { value: 'typescript', label: 'TypeScript' },
]

/** Props of the code tab; the code and language live in the app so other tabs can open code here. */
export interface CodeTabProps {
  code: string
  language: Language
  onCode: (code: string) => void
  onLanguage: (language: Language) => void
  run: RunState
  onRun: () => void
  onStop: () => void
  onClearContext: () => void
  interpreter?: Interpreter
  sessionReady: boolean
}

export function CodeTab(props: CodeTabProps) {
  const { run } = props
  const running = run.status === 'running'
  // Ctrl/Cmd+Enter anywhere on the tab runs the cell (Monaco binds it inside the editor too).
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key === 'Enter' && !(e.target instanceof HTMLElement && e.target.closest('.monaco-editor, textarea'))) {
        e.preventDefault()
        props.onRun()
      }
    }
    window.addEventListener('keydown', onKey)
    return () => window.removeEventListener('keydown', onKey)
  }, [props])
  const selected = languageOptions.find((o) => o.value === props.language) ?? languageOptions[0]!
  return (
    <SpaceBetween size="l">
      <Container
        header={
          <Header
            variant="h2"
            description={
              props.interpreter
                ? `Interpreter ${props.interpreter.name || props.interpreter.interpreterId} · network ${props.interpreter.network?.mode ?? 'SANDBOX'}`
                : 'Waiting for the session'
            }
            actions={
              <SpaceBetween direction="horizontal" size="xs">
                <Select
                  selectedOption={selected}
                  options={languageOptions}
                  onChange={(e) => props.onLanguage(e.detail.selectedOption.value as Language)}
                  ariaLabel="Language"
                  disabled={running}
                />
                <Button variant="primary" iconName="caret-right-filled" onClick={props.onRun} disabled={running || !props.sessionReady} ariaLabel="Run">
                  Run
                </Button>
                <Button iconName="close" onClick={props.onStop} disabled={!running} ariaLabel="Stop">
                  Stop
                </Button>
                <Button iconName="refresh" onClick={props.onClearContext} disabled={running || !props.sessionReady} ariaLabel="Clear context">
                  Clear context
                </Button>
              </SpaceBetween>
            }
          >
            Code editor
          </Header>
        }
      >
        <Suspense
          fallback={
            <Box padding="l">
              <Spinner /> Loading the editor…
            </Box>
          }
        >
          <CodeEditor value={props.code} language={props.language} onChange={props.onCode} onRun={props.onRun} />
        </Suspense>
        <Box variant="small" margin={{ top: 'xs' }}>
          Ctrl/Cmd+Enter runs the cell; Ctrl+M makes Tab leave the editor. Variables are kept between runs; Clear context restarts the kernel.
        </Box>
      </Container>
      <Container header={<Header variant="h2">Results</Header>}>
        <Results run={run} />
      </Container>
    </SpaceBetween>
  )
}
