/**
 * Calling the Admin API from tests, as ops would with curl: a bearer token,
 * JSON in and out.
 */
export const ADMIN_TOKEN = 'admin-token-for-tests-0123456789abcdefABCDEF'

export interface AdminCall {
  method?: string
  body?: unknown
  /** The token to send; null sends no Authorization header. */
  token?: string | null
  headers?: Record<string, string>
}

export function adminFetch(gatewayUrl: string, path: string, call: AdminCall = {}): Promise<Response> {
  const token = call.token === undefined ? ADMIN_TOKEN : call.token
  const headers: Record<string, string> = { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...call.headers }
  if (call.body !== undefined) headers['content-type'] ??= 'application/json'
  return fetch(`${gatewayUrl}${path}`, {
    method: call.method ?? (call.body === undefined ? 'GET' : 'POST'),
    headers,
    body: call.body === undefined ? undefined : typeof call.body === 'string' ? call.body : JSON.stringify(call.body),
  })
}

/** A call that must answer `status`; its JSON body (or null for 204). */
export async function admin<T = any>(gatewayUrl: string, path: string, call: AdminCall = {}, status = 200): Promise<T> {
  const response = await adminFetch(gatewayUrl, path, call)
  const text = await response.text()
  if (response.status !== status) throw new Error(`${call.method ?? 'GET'} ${path}: expected ${status}, got ${response.status} ${text}`)
  return (text ? JSON.parse(text) : null) as T
}
