/** A small CSV reader for the file preview: RFC 4180 quoting, the first `maxRows` rows only. */

/** Parses CSV text into rows of cells; stops after `maxRows` rows. */
export function parseCsv(text: string, maxRows = 100): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  let cell = ''
  let quoted = false
  for (let i = 0; i < text.length && rows.length < maxRows; i++) {
    const ch = text[i]
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"'
        i++
      } else if (ch === '"') quoted = false
      else cell += ch
    } else if (ch === '"' && cell === '') quoted = true
    else if (ch === ',') {
      row.push(cell)
      cell = ''
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++
      row.push(cell)
      rows.push(row)
      row = []
      cell = ''
    } else cell += ch
  }
  if ((cell !== '' || row.length > 0) && rows.length < maxRows) {
    row.push(cell)
    rows.push(row)
  }
  return rows
}
