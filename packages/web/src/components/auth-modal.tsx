/** Asks for an API key when the server has keys; the key is kept in this tab's sessionStorage only. */
import Box from '@cloudscape-design/components/box'
import Button from '@cloudscape-design/components/button'
import FormField from '@cloudscape-design/components/form-field'
import Input from '@cloudscape-design/components/input'
import Modal from '@cloudscape-design/components/modal'
import SpaceBetween from '@cloudscape-design/components/space-between'
import { useState } from 'react'

export interface AuthModalProps {
  visible: boolean
  error?: string | undefined
  onKey: (key: string) => void
}

export function AuthModal({ visible, error, onKey }: AuthModalProps) {
  const [key, setKey] = useState('')
  const submit = () => {
    if (key.trim()) onKey(key.trim())
  }
  return (
    <Modal
      visible={visible}
      onDismiss={() => {}}
      header="API key"
      footer={
        <Box float="right">
          <Button variant="primary" onClick={submit} disabled={!key.trim()} ariaLabel="Use key">
            Use key
          </Button>
        </Box>
      }
    >
      <form
        onSubmit={(e) => {
          e.preventDefault()
          submit()
        }}
      >
        <SpaceBetween size="s">
          <Box>
            This server needs an API key (create one with <code>codebox keys create --tenant &lt;name&gt;</code>). It is kept in this tab only.
          </Box>
          <FormField label="API key" errorText={error}>
            <Input type="password" value={key} onChange={(e) => setKey(e.detail.value)} ariaLabel="API key" autoFocus />
          </FormField>
        </SpaceBetween>
      </form>
    </Modal>
  )
}
