// A DNS server on loopback (UDP) for DNSLink tests: answers TXT queries from a table, NXDOMAIN for
// any other name, and counts the queries it gets; `silent` never answers (a server that is down).
import { createSocket, type RemoteInfo } from 'node:dgram'
import * as dnsPacket from 'dns-packet'

export interface TestDnsServer {
  /** `127.0.0.1:<port>`, as the dnsServers setting takes it. */
  address: string
  /** Queries asked per name. */
  queries: Map<string, number>
  close(): Promise<void>
}

const NXDOMAIN = 3

export async function startDnsServer (txt: Readonly<Record<string, string[]>>, options: { silent?: boolean } = {}): Promise<TestDnsServer> {
  const socket = createSocket('udp4')
  const queries = new Map<string, number>()
  socket.on('message', (message: Buffer, from: RemoteInfo) => {
    const query = dnsPacket.decode(message)
    for (const question of query.questions ?? []) queries.set(question.name, (queries.get(question.name) ?? 0) + 1)
    if (options.silent === true) return
    const question = query.questions?.[0]
    const texts = question !== undefined && question.type === 'TXT' ? txt[question.name.toLowerCase()] : undefined
    const answer = dnsPacket.encode({
      type: 'response',
      id: query.id,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (texts === undefined ? NXDOMAIN : 0),
      questions: query.questions,
      answers: texts === undefined || question === undefined ? [] : texts.map(text => ({ type: 'TXT' as const, name: question.name, ttl: 60, class: 'IN' as const, data: text }))
    })
    socket.send(answer, from.port, from.address)
  })
  await new Promise<void>(resolve => socket.bind(0, '127.0.0.1', resolve))
  const { port } = socket.address()
  return {
    address: `127.0.0.1:${port}`,
    queries,
    close: async () => { await new Promise<void>(resolve => socket.close(() => resolve())) }
  }
}
