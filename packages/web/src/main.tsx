/**
 * The IDE's entry: Cloudscape's global styles, motion off when the user (or a test) asks for
 * reduced motion, then the app. Monaco is not imported here: the editor is lazy-loaded so the
 * first paint does not wait for it.
 */
import '@cloudscape-design/global-styles/index.css'
import { disableMotion } from '@cloudscape-design/global-styles'
import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import './styles.css'
import { App } from './app.tsx'

if (matchMedia('(prefers-reduced-motion: reduce)').matches) disableMotion(true)

const root = document.getElementById('root')
if (!root) throw new Error('the page has no #root element')
createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
)
