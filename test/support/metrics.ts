/** /metrics read over HTTP the way an operator's scraper reads it. */

export interface MetricSamples {
  text: string;
  /** Sum of the samples of `name` whose labels include `labels`. */
  value(name: string, labels?: Record<string, string>): number;
  /** True when `name` is exposed at all (a HELP line). */
  has(name: string): boolean;
}

/** Reads /metrics over HTTP and parses the Prometheus text format (no exemplars, no timestamps needed). */
export async function scrapeMetrics(baseUrl: string): Promise<MetricSamples> {
  const res = await fetch(`${baseUrl}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  const text = await res.text();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return {
    text,
    value: (name, want = {}) =>
      samples
        .filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))
        .reduce((sum, s) => sum + s.value, 0),
    has: (name) => text.includes(`# HELP ${name} `),
  };
}
