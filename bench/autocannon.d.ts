// autocannon 9 ships no types: the part of its API the bench uses.
declare module 'autocannon' {
  interface Options {
    url: string
    connections?: number
    duration?: number
    amount?: number
    pipelining?: number
    /** ms between samples; with `amount`, completion is only noticed on a sample tick. */
    sampleInt?: number
    timeout?: number
    headers?: Record<string, string>
  }
  interface Histogram { average: number, mean: number, stddev: number, min: number, max: number, total: number, p50: number, p90: number, p99: number, totalCount?: number, sent?: number }
  interface Result {
    duration: number
    errors: number
    timeouts: number
    non2xx: number
    resets: number
    mismatches: number
    requests: Histogram
    latency: Histogram
    throughput: Histogram
  }
  function autocannon (opts: Options): Promise<Result>
  export default autocannon
}
