/**
 * A real browser for the tests: Debian's chromium, driven by playwright-core
 * (which brings no browser of its own). `.ci/run` installs chromium when it is
 * missing. Screenshots go to SCREENSHOT_DIR when set (to look at them), else
 * to a temporary directory removed at teardown.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
  })
}

/** Where a test file's screenshots go; removed at teardown unless SCREENSHOT_DIR asks to keep them. */
export function screenshotDirectory(t: { teardown: (fn: () => void) => void }, name: string): string {
  if (process.env.SCREENSHOT_DIR) {
    const dir = join(process.env.SCREENSHOT_DIR, name)
    mkdirSync(dir, { recursive: true })
    return dir
  }
  const dir = mkdtempSync(join(tmpdir(), `${name}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Whether the page fits its viewport without sideways scrolling (readable on a phone). */
export async function fitsWidth(page: Page): Promise<boolean> {
  return (await page.evaluate('document.documentElement.scrollWidth <= document.documentElement.clientWidth')) === true
}

/** The text of the element that has keyboard focus. */
export async function focusedText(page: Page): Promise<string> {
  return String(await page.evaluate('document.activeElement ? document.activeElement.textContent.trim() : ""'))
}
