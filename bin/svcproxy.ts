#!/usr/bin/env node
import { main } from '../lib/cli/main.js'

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
  // Long-running commands resolve after shutdown; anything still open must not hold the exit.
  if (code === 0 && process.argv[2] !== 'validate') setImmediate(() => process.exit(code))
}, (err: unknown) => {
  process.stderr.write(`svcproxy: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
