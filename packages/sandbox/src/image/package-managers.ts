/**
 * pip and npm in the sandbox image. The image is read-only and Debian's Python is "externally
 * managed" (PEP 668), so both install into the session's workspace: pip as a user install into
 * ~/.local (HOME is /workspace), npm's global prefix into ~/.npm-global and its cache
 * under /tmp. In a session without network they fail fast and say why.
 */
import { chmod, cp, mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'

/** Where npm lives in the image. */
export const IMAGE_NPM_DIR = '/usr/local/lib/node_modules/npm'

/**
 * pip's site-wide configuration. The image's site-packages are read-only, so pip itself falls back
 * to a user install (~/.local) and says so; not forcing `user = true` keeps `--target` and
 * `--prefix` working. PEP 668's marker would refuse even user installs: the image is the system.
 */
export const PIP_CONF = `[global]
disable-pip-version-check = true
no-input = true
timeout = 30
retries = 2

[install]
break-system-packages = true
no-warn-script-location = true
`

/** npm's built-in configuration (the `npmrc` beside npm itself, read before any user config). */
export const NPM_RC = `prefix=/workspace/.npm-global
cache=/tmp/.npm
update-notifier=false
fund=false
audit=false
fetch-retries=2
fetch-timeout=60000
`

/**
 * Runs a package manager. Without egress (no proxy in the environment) it gives up after the
 * first failed connection instead of minutes of retries, and a failure says why.
 */
export const OFFLINE_HINT = `#!/bin/sh
# codebox: runs a package manager; in a session without network, fails fast and says why.
if [ -n "$HTTPS_PROXY$https_proxy$HTTP_PROXY$http_proxy" ]; then exec "$@"; fi
export PIP_RETRIES=0 PIP_TIMEOUT=5 npm_config_fetch_retries=0 npm_config_fetch_timeout=5000
"$@"
status=$?
# only where a download may have been what failed (not \`npm test\`, \`pip uninstall\`)
case " $* " in
  *" install "* | *" i "* | *" add "* | *" ci "* | *" update "* | *" download "* | *" wheel "* | *" exec "* | *npx-cli.js*) ;;
  *) exit "$status" ;;
esac
if [ "$status" -ne 0 ]; then
  echo "codebox: this session has no network, so packages cannot be downloaded from an index or registry. Packages already in the image import as they are; install a local file from the workspace (pip install ./name.whl, npm install ./name.tgz), or use an interpreter with network mode PUBLIC or VPC." >&2
fi
exit "$status"
`

const wrapper = (command: string): string => `#!/bin/sh
exec /usr/local/lib/codebox/offline-hint ${command} "$@"
`

/** The wrappers on PATH (/usr/local/bin comes before /usr/bin): name → what they run. */
export const WRAPPERS: Record<string, string> = {
  pip: '/usr/bin/python3 -m pip',
  pip3: '/usr/bin/python3 -m pip',
  npm: `/usr/local/bin/node ${IMAGE_NPM_DIR}/bin/npm-cli.js`,
  npx: `/usr/local/bin/node ${IMAGE_NPM_DIR}/bin/npx-cli.js`,
}

/** Everything above, for the recipe's hash: a change here builds a new image. */
export const packageManagerFiles = (): string => JSON.stringify({ PIP_CONF, NPM_RC, OFFLINE_HINT, WRAPPERS, wrapper: wrapper('') })

/** Writes pip's configuration, copies npm in when the recipe has one, and adds the wrappers. */
export async function addPackageManagers(root: string, npmDir: string | undefined): Promise<void> {
  const inRoot = (p: string): string => path.join(root, p)
  await writeFile(inRoot('etc/pip.conf'), PIP_CONF)
  await mkdir(inRoot('usr/local/lib/codebox'), { recursive: true, mode: 0o755 })
  await writeFile(inRoot('usr/local/lib/codebox/offline-hint'), OFFLINE_HINT, { mode: 0o755 })
  await chmod(inRoot('usr/local/lib/codebox/offline-hint'), 0o755)
  for (const [name, command] of Object.entries(WRAPPERS)) {
    if (!npmDir && command.includes(IMAGE_NPM_DIR)) continue
    await writeFile(inRoot(`usr/local/bin/${name}`), wrapper(command), { mode: 0o755 })
    await chmod(inRoot(`usr/local/bin/${name}`), 0o755)
  }
  if (npmDir) {
    await mkdir(path.dirname(inRoot(IMAGE_NPM_DIR)), { recursive: true, mode: 0o755 })
    await cp(npmDir, inRoot(IMAGE_NPM_DIR), { recursive: true, dereference: true })
    await writeFile(inRoot(`${IMAGE_NPM_DIR}/npmrc`), NPM_RC)
  }
}
