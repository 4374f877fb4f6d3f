#!/usr/bin/env node
import { runCli } from '../lib/cli/main.js'

runCli(process.argv.slice(2))
