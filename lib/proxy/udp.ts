import type { DataPlaneContext, Frontend, FrontendSpec, FrontendState } from './frontend.js'
import type { ServicePortRuntime } from './runtime.js'

/** Placeholder until UDP sessions land (issue 4): reports the port as not served. */
export class UdpFrontend implements Frontend {
  readonly spec: FrontendSpec
  rt: ServicePortRuntime
  state: FrontendState = 'binding'
  error = ''
  boundPort = 0

  constructor (spec: FrontendSpec, rt: ServicePortRuntime, _ctx: DataPlaneContext) {
    this.spec = spec
    this.rt = rt
  }

  async open (): Promise<void> {
    this.state = 'error'
    this.error = 'UDP is not served yet'
  }

  close (): void {
    this.state = 'closed'
  }

  isClosed (): boolean {
    return this.state === 'closed' || this.state === 'error'
  }

  openCount (): number {
    return 0
  }

  endpointsRemoved (): void {}
}
