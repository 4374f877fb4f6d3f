import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { type DataPlaneContext, type Frontend, type FrontendSpec, type FrontendState, listenServer } from '../frontend/contract.js'
import type { ServicePortRuntime } from '../frontend/runtime.js'

const kFrontend = Symbol('svcproxy.healthCheck')

interface HealthServer extends Server { [kFrontend]: HealthCheckFrontend }

/**
 * `spec.healthCheckNodePort` of a LoadBalancer service with externalTrafficPolicy Local: the
 * port a cloud load balancer probes on every node to send traffic only to nodes that have an
 * endpoint of the service. Answered as kube-proxy answers it: 200 while this node has a local
 * endpoint (ready, or the KEP-1669 serving-terminating fallback), 503 otherwise, with
 * `{"service":{"namespace","name"},"localEndpoints":N,"serviceProxyHealthy":true}` and the
 * header `X-Load-Balancing-Endpoint-Weight: N`. Any path and method get the same answer.
 */
export class HealthCheckFrontend implements Frontend {
  readonly spec: FrontendSpec
  rt: ServicePortRuntime
  state: FrontendState = 'binding'
  error = ''
  boundPort = 0
  private readonly ctx: DataPlaneContext
  private readonly server: HealthServer
  private closed = false

  constructor (spec: FrontendSpec, rt: ServicePortRuntime, ctx: DataPlaneContext) {
    this.spec = spec
    this.rt = rt
    this.ctx = ctx
    const server = createServer({ keepAliveTimeout: 5000 }, onRequest) as HealthServer
    server[kFrontend] = this
    server.on('error', (err: NodeJS.ErrnoException) => {
      if (this.state !== 'binding') this.ctx.logger.warn({ service: this.rt.id, err: err.message }, 'health check server error')
    })
    this.server = server
  }

  async open (): Promise<void> {
    const r = await listenServer(this.server, this.spec.host, this.ctx.ephemeralPorts ? 0 : this.spec.port)
    if (r.error !== '') {
      this.state = 'error'
      this.error = r.error
      this.closed = true
      return
    }
    this.boundPort = r.port
    this.state = 'listening'
  }

  /** Probes hold nothing worth draining: idle keep-alive connections close at once, all of them when `hard`. */
  close (hard: boolean): void {
    if (this.state === 'listening' || this.state === 'binding') this.server.close(() => { this.closed = true })
    else this.closed = true
    this.state = 'closed'
    this.server.closeIdleConnections()
    if (hard) this.server.closeAllConnections()
  }

  isClosed (): boolean {
    return this.closed
  }

  openCount (): number {
    return 0
  }

  endpointsRemoved (): void {}
}

function onRequest (this: HealthServer, _req: IncomingMessage, res: ServerResponse): void {
  const rt = this[kFrontend].rt
  const n = rt.localEndpoints.length
  const body = `{"service":{"namespace":${JSON.stringify(rt.namespace)},"name":${JSON.stringify(rt.service)}},"localEndpoints":${n},"serviceProxyHealthy":true}`
  res.writeHead(n > 0 ? 200 : 503, {
    'Content-Type': 'application/json',
    'X-Content-Type-Options': 'nosniff',
    'X-Load-Balancing-Endpoint-Weight': String(n),
  })
  res.end(body)
}
