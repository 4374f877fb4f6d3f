// The backends every target shares, in one child process of their own:
// - HTTP: 3 node:http servers (127.0.30.1-3) answering a fixed 12-byte body;
// - bulk: 1 TCP sink (127.0.30.10) that discards what it reads and, at the client's FIN,
//   answers with the byte count and closes (so the client knows every byte went through);
// - UDP: 3 echo sockets (127.0.31.1-3).
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { once } from 'node:events'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer, type Server } from 'node:net'
import { type Backends, type Endpoint, failToParent, serveParent } from './child.js'

const BODY = Buffer.from('hello world\n')
const HEADERS = { 'content-type': 'text/plain', 'content-length': String(BODY.length) }

async function listen (server: Server | HttpServer, ip: string): Promise<Endpoint> {
  server.listen(0, ip)
  await once(server, 'listening')
  const a = server.address()
  if (a === null || typeof a === 'string') throw new Error('no address')
  return { ip, port: a.port }
}

async function main (): Promise<void> {
  const http: HttpServer[] = []
  const tcp: Server[] = []
  const udp: UdpSocket[] = []
  const out: Backends = { http: [], bulk: [], udp: [] }

  for (let i = 1; i <= 3; i++) {
    const s = createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
      req.resume()
      res.writeHead(200, HEADERS)
      res.end(BODY)
    })
    http.push(s)
    out.http.push(await listen(s, `127.0.30.${i}`))
  }

  const sink = createServer({ allowHalfOpen: true }, (s) => {
    let n = 0
    s.on('data', (c: Buffer) => { n += c.length })
    s.on('end', () => { s.end(`${n}\n`) })
    s.on('error', () => {})
  })
  tcp.push(sink)
  out.bulk.push(await listen(sink, '127.0.30.10'))

  for (let i = 1; i <= 3; i++) {
    const u = createSocket('udp4')
    u.on('message', (msg, r) => { u.send(msg, r.port, r.address) })
    u.on('error', () => {})
    u.bind(0, `127.0.31.${i}`)
    await once(u, 'listening')
    udp.push(u)
    out.udp.push({ ip: `127.0.31.${i}`, port: u.address().port })
  }

  serveParent(out, async () => {
    for (const s of http) { s.close(); s.closeAllConnections() }
    for (const s of tcp) s.close()
    for (const u of udp) u.close()
  })
}

main().catch(failToParent)
