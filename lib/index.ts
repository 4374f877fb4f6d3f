// svcproxy's public API: every name here is documented in docs/api.md (test/api.test.ts holds
// the two together). Anything else under lib/ is internal and may change without notice.

// The proxy
export { createProxy, ServiceProxy } from './api/service-proxy.js'
export type { ApplyResult, ServicePortStatus, FrontendStatus, EndpointStatus } from './api/service-proxy.js'
export type { ProxyOptions } from './api/options.js'
export type { FrontendKind, FrontendState } from './frontend/contract.js'
export type { Algorithm } from './balancer/balancer.js'
export type { Engine } from './internals/uv-tcp.js'
export { DEFAULTS } from './defaults.js'
export { DIAL_TIMEOUTS_MS } from './tcp/dial.js'

// Its events
export type { ProxyEventMap, ConnectionEvent, EndpointEvent, DialFailedEvent, CloseEvent } from './frontend/events.js'
export type { SessionEvent, SessionCloseEvent } from './frontend/events.js'
export { CLOSE_REASONS, DROP_REASONS } from './frontend/reasons.js'
export type { CloseReason, DropReason } from './frontend/reasons.js'
export type { EndpointsChangedEvent } from './frontend/events.js'
// Awaiting events and explaining picks (a test harness's tools: docs/testing.md)
export type { ProxyEvent, ProxyEventName, WaitForOptions, EventsOptions } from './api/wait-for.js'
export type { ExplainOptions, Explanation, EndpointVerdict } from './api/explain.js'

// Faults ("toxics") a harness attaches to services, ports and endpoints: proxy.faults
export { FaultRegistry } from './api/faults.js'
export type { FaultScope, ToxicInput, Toxic, ScopedToxic, ToxicType, ToxicStream } from './faults/toxic.js'
export type { FaultEvent } from './frontend/events.js'

// Manifests: Kubernetes objects as svcproxy reads them
export { parseDocument, parseObjects, readDocumentFile } from './model/document.js'
export type { ParsedDocument } from './model/document.js'
export type {
  KubeObject, ObjectKind, Service, ServicePort, ServiceType, TrafficPolicy, Protocol,
  Endpoints, EndpointSubset, EndpointAddress, EndpointPort,
  EndpointSlice, SliceEndpoint, SliceEndpointConditions, Pod, ContainerPort,
} from './model/types.js'
export { parseRef } from './table/refs.js'
export type { ObjectRef } from './table/refs.js'
export { parseDuration } from './util/duration.js'

// Errors
export {
  SvcproxyError, ValidationError, ConfigError, FileError, NotFoundError, ClosedError, StoreError,
  AdminListenError, UnreachableError, BindError, ERROR_CODES, formatIssue,
  WaitTimeoutError, EventOverflowError, FaultError,
} from './errors.js'
export type { ValidationIssue, ErrorCode, BindFailure } from './errors.js'

// Sources: where the desired state comes from
export { watchConfigFile } from './sources/file.js'
export type { FileSource, FileSourceOptions } from './sources/file.js'
export { watchRedis } from './sources/redis/source.js'
export type { RedisSource, RedisSourceOptions, RedisSourceStats, AppliedEvent } from './sources/redis/types.js'
export type { SourceHealth } from './sources/health.js'

// The Redis store's writer side
export { RedisStore, createStore } from './store/store.js'
export type { StoreOptions, StoreWriteResult, StoreSnapshot, ChangeAction } from './store/store.js'

// Operations
export { createAdminServer } from './admin/server.js'
export type { AdminServer, AdminServerOptions } from './admin/server.js'
export type { ServicesDoc, EndpointsDoc, EndpointRow } from './admin/serialize.js'
export { attachAccessLog } from './admin/access-log.js'

// Toxiproxy's HTTP API over the proxy (docs/toxiproxy.md)
export { startToxiproxyApi } from './toxiproxy/server.js'
export type { ToxiproxyApiOptions, ToxiproxyApiServer } from './toxiproxy/server.js'
