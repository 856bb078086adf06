/**
 * Progress of long runs (encrypted validation, measured plans, benches), reported by the
 * library where the work happens and shown by whoever set a sink (the CLI's bar or log
 * lines, src/cli/progress.ts). A process-wide sink, like a logger, so deep loops report
 * without every caller in between passing a callback; without a sink it costs nothing.
 */

export interface ProgressEvent {
  /** what is being done: "encrypt", "evaluate", "evaluate segment 2/3", "measure" */
  stage: string;
  done: number;
  total: number;
  /** what `done` counts: "passes", "samples", "candidates" */
  unit: string;
  /** counts beside the main one, e.g. "4 client refreshes" */
  detail?: string;
}

export type ProgressSink = (e: ProgressEvent) => void;

let sink: ProgressSink | null = null;

/** Installs `s` (null: none) and returns the previous sink, so callers can restore it. */
export function setProgressSink(s: ProgressSink | null): ProgressSink | null {
  const previous = sink;
  sink = s;
  return previous;
}

export function reportProgress(e: ProgressEvent): void {
  sink?.(e);
}
