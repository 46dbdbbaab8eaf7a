/**
 * The Monaco editor, lazy-loaded (its own chunk) so the first paint does not wait for it. Monaco
 * comes from the local bundle: `loader.config({ monaco })` runs before the editor first renders,
 * or @monaco-editor/react would fetch Monaco from a CDN. Its workers are this build's files.
 */
import Editor, { loader, type OnMount } from '@monaco-editor/react'
import * as monaco from 'monaco-editor'
import EditorWorker from 'monaco-editor/editor/editor.worker?worker'
import TsWorker from 'monaco-editor/language/typescript/ts.worker?worker'
import { useEffect, useRef } from 'react'
import type { Language } from '@codebox/sdk'

self.MonacoEnvironment = {
  getWorker: (_id: string, label: string) => (label === 'typescript' || label === 'javascript' ? new TsWorker() : new EditorWorker()),
}
loader.config({ monaco })

/** Props of the editor. */
export interface CodeEditorProps {
  value: string
  language: Language
  onChange: (value: string) => void
  /** Ctrl/Cmd+Enter inside the editor. */
  onRun: () => void
}

/** Monaco with Ctrl/Cmd+Enter bound to Run; `window.codeboxEditor` exposes the model for tests and scripts. */
export default function CodeEditor({ value, language, onChange, onRun }: CodeEditorProps) {
  const runRef = useRef(onRun)
  useEffect(() => {
    runRef.current = onRun
  }, [onRun])
  const onMount: OnMount = (editor, m) => {
    editor.addCommand(m.KeyMod.CtrlCmd | m.KeyCode.Enter, () => runRef.current())
    ;(window as unknown as { codeboxEditor?: unknown }).codeboxEditor = editor
  }
  return (
    <Editor
      height="360px"
      language={language}
      value={value}
      onChange={(v) => onChange(v ?? '')}
      onMount={onMount}
      options={{
        minimap: { enabled: false },
        fontSize: 14,
        scrollBeyondLastLine: false,
        automaticLayout: true,
        ariaLabel: 'Code editor',
        tabFocusMode: false,
      }}
      loading="Loading the editor…"
    />
  )
}
