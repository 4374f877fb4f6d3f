// bench/redis.ts runs end to end with tiny counts. Not a performance test: no timing is checked.
import t from 'tap'
import { formatTable, runBench } from '../bench/redis.js'

t.test('the redis bench produces every row with a number', async (t) => {
  const rows = await runBench({ changes: 4, services: 20, endpointsPerService: 2 })
  t.same(rows.map((r) => r.metric.replace(/[\d,]+ svc × \d+ ep/, 'N').replace(/, \d daemons?$/, '')), [
    'convergence p50', 'convergence p99', 'convergence p50', 'convergence p99',
    'write all (one apply), N', 'daemon full load (list + serve), N', 'RSS after load (bench process, writer included)',
    'one endpoint change: apply() at that size', 'one endpoint change: apply start → daemon applied',
    'at that size: apply start → first connection to the new endpoint, p50', 'at that size: apply start → first connection to the new endpoint, p99',
  ])
  for (const r of rows) t.ok(Number.isFinite(Number.parseFloat(r.value)), `${r.metric}: ${r.value}`)
  t.match(formatTable(rows), /^metric\s+value\s+n$/m)
})
