/**
 * GET /metrics in Prometheus text format (version 0.0.4): request counts by route and status,
 * a latency histogram per route, and the gauges an operator watches (queue depth, busy
 * workers, each worker's SEAL heap, stored keys, process memory).
 */

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

export interface Gauges {
  queueDepth: number;
  workers: number;
  busyWorkers: number;
  workerHeapBytes: number[];
  workersReplaced: number;
  workerKeyLoads: number;
  keysStored: number;
  refreshRoundTrips: number;
  refreshSessions: number;
}

export class Metrics {
  private requests = new Map<string, number>();
  private latency = new Map<string, Histogram>();

  observe(route: string, status: number, seconds: number): void {
    const k = `${route}\u0000${status}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
    let h = this.latency.get(route);
    if (!h) this.latency.set(route, (h = { counts: BUCKETS.map(() => 0), sum: 0, count: 0 }));
    BUCKETS.forEach((b, i) => {
      if (seconds <= b) h!.counts[i]++;
    });
    h.sum += seconds;
    h.count++;
  }

  render(g: Gauges): string {
    const out: string[] = [];
    out.push('# HELP hepoly_requests_total HTTP requests answered, by route and status.', '# TYPE hepoly_requests_total counter');
    for (const [k, v] of this.requests) {
      const [route, status] = k.split('\u0000');
      out.push(`hepoly_requests_total{route="${route}",status="${status}"} ${v}`);
    }
    out.push('# HELP hepoly_request_duration_seconds Time to answer a request, by route.', '# TYPE hepoly_request_duration_seconds histogram');
    for (const [route, h] of this.latency) {
      BUCKETS.forEach((b, i) => out.push(`hepoly_request_duration_seconds_bucket{route="${route}",le="${b}"} ${h.counts[i]}`));
      out.push(`hepoly_request_duration_seconds_bucket{route="${route}",le="+Inf"} ${h.count}`);
      out.push(`hepoly_request_duration_seconds_sum{route="${route}"} ${h.sum}`, `hepoly_request_duration_seconds_count{route="${route}"} ${h.count}`);
    }
    const gauge = (name: string, help: string, v: number, type = 'gauge') => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${v}`);
    gauge('hepoly_queue_depth', 'Evaluations waiting for a worker.', g.queueDepth);
    gauge('hepoly_workers', 'Evaluation worker threads.', g.workers);
    gauge('hepoly_workers_busy', 'Worker threads evaluating now.', g.busyWorkers);
    gauge('hepoly_workers_replaced_total', 'Workers that died or timed out and were replaced.', g.workersReplaced, 'counter');
    gauge('hepoly_worker_key_loads_total', "Client key sets loaded into a worker (first request there, or after an eviction).", g.workerKeyLoads, 'counter');
    out.push('# HELP hepoly_worker_heap_bytes SEAL wasm heap of each worker thread.', '# TYPE hepoly_worker_heap_bytes gauge');
    g.workerHeapBytes.forEach((b, i) => out.push(`hepoly_worker_heap_bytes{worker="${i}"} ${b}`));
    gauge('hepoly_keys_stored', 'Evaluation key sets on disk.', g.keysStored);
    gauge('hepoly_refresh_round_trips_total', 'Client refresh rounds handed out (--refresh client exports: one per cut and request).', g.refreshRoundTrips, 'counter');
    gauge('hepoly_refresh_sessions', 'Refresh sessions waiting for their client.', g.refreshSessions);
    const mem = process.memoryUsage();
    gauge('process_resident_memory_bytes', 'Resident memory of the server process.', mem.rss);
    gauge('process_heap_bytes', 'V8 heap used by the server process.', mem.heapUsed);
    return `${out.join('\n')}\n`;
  }
}
