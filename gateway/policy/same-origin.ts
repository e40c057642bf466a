/**
 * Whether a form post came from the gateway's own pages. A form on another
 * site cannot answer for the user: browsers name the form's origin in
 * `Origin` and `Sec-Fetch-Site`, and when they are sent they must say this
 * site. (The forms' cookies and CSRF tokens hold even without them.) Used by
 * the consent page and the connected-apps page alike.
 *
 * Pure: no Fastify here; the routes pass header values in.
 */
export function fromOtherSite(publicUrl: string, headers: { origin?: string | undefined; 'sec-fetch-site'?: string | string[] | undefined }): boolean {
  const origin = headers.origin
  const site = headers['sec-fetch-site']
  return (origin !== undefined && origin !== new URL(publicUrl).origin) || (site !== undefined && site !== 'same-origin')
}
