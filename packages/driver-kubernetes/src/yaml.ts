/** Manifests as YAML documents, the way kubectl and Helm read them; deterministic (keys in the order the builders set them). */
import { stringify } from 'yaml'

/** One or more objects as a YAML stream (`---` between documents), ending in a newline. */
export function toYamlDocuments(objects: readonly object[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0, indentSeq: true })).join('---\n')
}
