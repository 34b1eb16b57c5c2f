/** A metric without labels as a node's /metrics shows it; 0 while the node has not exposed it. */
export async function metricValue (url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0)
}
