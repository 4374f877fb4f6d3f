import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * An answer other than 2xx, as Toxiproxy gives it: `{"error": "...", "status": N}`. Not an
 * Error subclass: it never leaves this layer (the HTTP handler turns it into a response).
 */
export class ApiFailure {
  constructor (readonly status: number, readonly message: string) {}
}

// Toxiproxy's own messages (api.go), word for word: clients and their users match on them.
export const PROXY_NOT_FOUND = 'proxy not found'
export const PROXY_EXISTS = 'proxy already exists'
export const TOXIC_NOT_FOUND = 'toxic not found'
export const TOXIC_EXISTS = 'toxic already exists'
export const INVALID_STREAM = 'stream was invalid, can be either upstream or downstream'
export const INVALID_TOXIC_TYPE = 'invalid toxic type'

export const badRequest = (why: string): ApiFailure => new ApiFailure(400, `bad request body: ${why}`)
export const missingField = (field: string): ApiFailure => new ApiFailure(400, `missing required field: ${field}`)

/** Largest request body read; Toxiproxy has no limit, a populate of thousands of proxies fits. */
const MAX_BODY = 4 * 1024 * 1024

/** The request's JSON body; an empty body is `undefined` (Go's decoder: EOF → bad request where a body is needed). */
export async function readJson (req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length
    if (size > MAX_BODY) throw badRequest(`body larger than ${MAX_BODY} bytes`)
    chunks.push(c)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (text.trim() === '') return undefined
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw badRequest((err as Error).message)
  }
}

/** A JSON object body, or the 400 Toxiproxy gives when it is missing or not an object. */
export function objectBody (body: unknown): Record<string, unknown> {
  if (body === undefined) throw badRequest('EOF')
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest(`expected a JSON object, got ${Array.isArray(body) ? 'an array' : JSON.stringify(body)}`)
  return body as Record<string, unknown>
}

/** Field readers: a wrong type is a 400 naming the field (Go: "json: cannot unmarshal ..."). */
export function optString (o: Record<string, unknown>, key: string, where = ''): string | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw badRequest(`${where}${key}: expected a string, got ${JSON.stringify(v)}`)
  return v
}

export function optBool (o: Record<string, unknown>, key: string, where = ''): boolean | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'boolean') throw badRequest(`${where}${key}: expected true or false, got ${JSON.stringify(v)}`)
  return v
}

export function optNumber (o: Record<string, unknown>, key: string, where = ''): number | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest(`${where}${key}: expected a number, got ${JSON.stringify(v)}`)
  return v
}

export function sendJson (res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body))
}

/** Toxiproxy's error body, with the trailing newline Go's http.Error adds. */
export function sendFailure (res: ServerResponse, f: ApiFailure): void {
  res.writeHead(f.status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
  res.end(`${JSON.stringify({ error: f.message, status: f.status })}\n`)
}

export function sendEmpty (res: ServerResponse, status: number): void {
  res.writeHead(status, { 'cache-control': 'no-store' })
  res.end()
}
