/**
 * Loaded with `node --import` into a gateway process by the process-safety
 * test: on SIGUSR2 it injects the fault PROCESS_FAULT names, outside any
 * request, as a bug elsewhere in the process would.
 */
process.on('SIGUSR2', () => {
  if (process.env.PROCESS_FAULT === 'rejection') void Promise.reject(new Error('injected rejection'))
  if (process.env.PROCESS_FAULT === 'exception') {
    setImmediate(() => {
      throw new Error('injected exception')
    })
  }
})
