/** A metric without labels as a node's /metrics shows it; 0 while the node has not exposed it. */
export async function metricValue (url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0)
}

/** The sum of a metric's series whose labels include `labels` (all series when none are given). */
export async function metricSum (url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let sum = 0
  for (const match of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? ([0-9.e+]+)$`, 'gm'))) {
    const series = match[1] ?? ''
    if (Object.entries(labels).every(([key, value]) => series.includes(`${key}="${value}"`))) sum += Number(match[2])
  }
  return sum
}
