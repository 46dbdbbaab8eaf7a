/**
 * The Files panel: the session's /workspace as a tree browsed one folder at a time, upload by
 * drag and drop or file picker (with progress), download, delete and a CSV preview.
 */
import Box from '@cloudscape-design/components/box'
import BreadcrumbGroup from '@cloudscape-design/components/breadcrumb-group'
import Button from '@cloudscape-design/components/button'
import Container from '@cloudscape-design/components/container'
import FileDropzone from '@cloudscape-design/components/file-dropzone'
import FileInput from '@cloudscape-design/components/file-input'
import Header from '@cloudscape-design/components/header'
import Modal from '@cloudscape-design/components/modal'
import ProgressBar from '@cloudscape-design/components/progress-bar'
import SpaceBetween from '@cloudscape-design/components/space-between'
import Table from '@cloudscape-design/components/table'
import { useCallback, useEffect, useState } from 'react'
import type { FileEntry } from '@codebox/sdk'
import { interpreter } from '../connection.ts'
import { parseCsv } from '../csv.ts'
import { saveBytes } from './results.tsx'

export interface FilesPanelProps {
  sessionId?: string
  /** Changes when files may have changed (after each run), to reload the listing. */
  revision: number
}

interface Upload {
  name: string
  sent: number
  total: number
}

const formatSize = (n: number): string => (n < 1024 ? `${n} B` : n < 2 ** 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 2 ** 20).toFixed(1)} MiB`)

export function FilesPanel({ sessionId, revision }: FilesPanelProps) {
  const [dir, setDir] = useState('')
  const [entries, setEntries] = useState<FileEntry[]>([])
  const [error, setError] = useState<string | undefined>()
  const [loading, setLoading] = useState(false)
  const [upload, setUpload] = useState<Upload | undefined>()
  const [preview, setPreview] = useState<{ path: string; rows: string[][] } | undefined>()

  const reload = useCallback(async () => {
    if (!sessionId) return
    setLoading(true)
    try {
      const list = await interpreter(sessionId).listFileEntries(dir)
      setEntries([...list.items].sort((a, b) => (a.type === b.type ? a.name.localeCompare(b.name) : a.type === 'directory' ? -1 : 1)))
      setError(undefined)
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e))
    } finally {
      setLoading(false)
    }
  }, [sessionId, dir])

  useEffect(() => {
    void reload()
  }, [reload, revision])

  const uploadFiles = async (files: File[]) => {
    if (!sessionId) return
    for (const file of files) {
      setUpload({ name: file.name, sent: 0, total: file.size })
      try {
        const target = dir ? `${dir}/${file.name}` : file.name
        await interpreter(sessionId, (sent, total) => setUpload({ name: file.name, sent, total })).uploadFile(target, file)
      } catch (e) {
        setError(`upload of ${file.name} failed: ${e instanceof Error ? e.message : String(e)}`)
        break
      }
    }
    setUpload(undefined)
    await reload()
  }

  const download = async (entry: FileEntry) => {
    if (!sessionId) return
    try {
      saveBytes(await interpreter(sessionId).downloadFile(entry.path), entry.name, entry.mimeType)
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e))
    }
  }

  const remove = async (entry: FileEntry) => {
    if (!sessionId) return
    try {
      await interpreter(sessionId).deleteFile(entry.path, { recursive: entry.type === 'directory' })
      await reload()
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e))
    }
  }

  const showCsv = async (entry: FileEntry) => {
    if (!sessionId) return
    try {
      const bytes = await interpreter(sessionId).downloadFile(entry.path)
      setPreview({ path: entry.path, rows: parseCsv(new TextDecoder().decode(bytes.subarray(0, 256 * 1024)), 51) })
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e))
    }
  }

  const crumbs = [
    { text: 'workspace', href: '#' },
    ...dir
      .split('/')
      .filter(Boolean)
      .map((part, i, all) => ({ text: part, href: `#${all.slice(0, i + 1).join('/')}` })),
  ]
  const header = preview?.rows[0] ?? []
  return (
    <Container
      header={
        <Header
          variant="h2"
          counter={`(${entries.length})`}
          actions={<Button iconName="refresh" ariaLabel="Refresh files" onClick={() => void reload()} loading={loading} />}
        >
          Files
        </Header>
      }
    >
      <SpaceBetween size="s">
        <BreadcrumbGroup
          items={crumbs}
          ariaLabel="Folder"
          onFollow={(e) => {
            e.preventDefault()
            setDir(e.detail.href.slice(1))
          }}
        />
        {error ? <Box color="text-status-error">{error}</Box> : null}
        <FileDropzone onChange={(e) => void uploadFiles(e.detail.value)}>
          <SpaceBetween size="xxs" alignItems="center">
            <Box color="inherit">Drop files here to upload</Box>
            <FileInput multiple value={[]} onChange={(e) => void uploadFiles(e.detail.value)} ariaLabel="Upload">
              Upload
            </FileInput>
          </SpaceBetween>
        </FileDropzone>
        {upload ? (
          <ProgressBar
            label={`Uploading ${upload.name}`}
            value={upload.total ? Math.round((upload.sent / upload.total) * 100) : 0}
            additionalInfo={`${formatSize(upload.sent)} of ${formatSize(upload.total)}`}
          />
        ) : null}
        <Table
          variant="embedded"
          ariaLabels={{ tableLabel: 'Files in the workspace' }}
          items={entries}
          trackBy="path"
          empty={<Box color="text-status-inactive">No files</Box>}
          columnDefinitions={[
            {
              id: 'name',
              header: 'Name',
              cell: (e) =>
                e.type === 'directory' ? (
                  <Button variant="inline-link" iconName="folder" onClick={() => setDir(e.path)} ariaLabel={`Open folder ${e.name}`}>
                    {e.name}
                  </Button>
                ) : (
                  e.name
                ),
            },
            { id: 'size', header: 'Size', cell: (e) => (e.type === 'directory' ? '' : formatSize(e.size)) },
            {
              id: 'actions',
              header: 'Actions',
              cell: (e) => (
                <SpaceBetween direction="horizontal" size="xxs">
                  {e.type === 'file' ? (
                    <Button variant="inline-icon" iconName="download" ariaLabel={`Download ${e.name}`} onClick={() => void download(e)} />
                  ) : null}
                  {e.type === 'file' && /\.(csv|tsv)$/i.test(e.name) ? (
                    <Button variant="inline-icon" iconName="search" ariaLabel={`Preview ${e.name}`} onClick={() => void showCsv(e)} />
                  ) : null}
                  <Button variant="inline-icon" iconName="remove" ariaLabel={`Delete ${e.name}`} onClick={() => void remove(e)} />
                </SpaceBetween>
              ),
            },
          ]}
        />
      </SpaceBetween>
      <Modal visible={preview !== undefined} onDismiss={() => setPreview(undefined)} header={`Preview of ${preview?.path ?? ''}`} size="max">
        {preview ? (
          <Table
            variant="embedded"
            ariaLabels={{ tableLabel: `Preview of ${preview.path}` }}
            items={preview.rows.slice(1).map((cells, i) => ({ i, cells }))}
            columnDefinitions={header.map((h, c) => ({ id: String(c), header: h, cell: (row: { cells: string[] }) => row.cells[c] ?? '' }))}
            footer={<Box variant="small">The first {Math.max(0, preview.rows.length - 1)} rows</Box>}
          />
        ) : null}
      </Modal>
    </Container>
  )
}
