/**
 * Untrusted HTML from a sandbox (a DataFrame's `text/html`, rich output) made safe to show in the
 * page: DOMPurify keeps only tables and text markup — no script, style, form, image, link target
 * or event handler survives — and the page's Content-Security-Policy forbids inline script anyway.
 */
import DOMPurify from 'dompurify'

const allowedTags = [
  'table',
  'thead',
  'tbody',
  'tfoot',
  'tr',
  'th',
  'td',
  'caption',
  'colgroup',
  'col',
  'div',
  'span',
  'p',
  'br',
  'hr',
  'b',
  'i',
  'em',
  'strong',
  'code',
  'pre',
  'small',
  'sub',
  'sup',
  'ul',
  'ol',
  'li',
  'h1',
  'h2',
  'h3',
  'h4',
  'h5',
  'h6',
]
const allowedAttributes = ['class', 'colspan', 'rowspan', 'align', 'valign']

/** HTML with only table and text markup left; safe to put into the page with innerHTML. */
export function sanitizeHtml(html: string): string {
  return DOMPurify.sanitize(html, { ALLOWED_TAGS: allowedTags, ALLOWED_ATTR: allowedAttributes, ALLOW_DATA_ATTR: false, ALLOW_ARIA_ATTR: false })
}
