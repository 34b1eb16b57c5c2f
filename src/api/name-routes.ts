// IPNS names under /api/v1/names (issue 14): this node's keys, publishing a name for an image,
// and resolving or inspecting any name (an IPNS name, or a domain through DNSLink).
import type { FastifyInstance } from 'fastify'
import { untilClientLeaves } from '../http-request.ts'
import { apiErrorResponses } from './errors.ts'
import type { ApiRoutesOptions } from './membership.ts'
import {
  createKeyBodySchema, ipnsKeySchema, ipnsKeysSchema, nameParams, nameRecordSchema, publishBodySchema, publishedNamesSchema, publishedSchema, resolvedNameSchema,
  type CreateKeyBody, type IpnsKeyAnswer, type IpnsKeysAnswer, type NameRecordAnswer, type PublishBody, type PublishedAnswer, type PublishedNamesAnswer, type ResolvedNameAnswer
} from './schemas.ts'

/** What the routes use of the node's names (names/names.ts). */
export interface NamesApi {
  listKeys(): Promise<IpnsKeyAnswer[]>
  /** The names this node publishes (and republishes). */
  published(): Promise<Array<{ key: string, name: string, value: string, image: string, sequence: string, lifetimeSeconds: number, publishedAt: string, signedAt: string }>>
  createKey(name: string): Promise<IpnsKeyAnswer>
  publish(options: { image: string, key?: string, lifetimeSeconds?: number, ttlSeconds?: number }, signal: AbortSignal): Promise<{
    publication: { key: string, name: string, value: string, image: string, sequence: string, lifetimeSeconds: number, ttlSeconds: number, publishedAt: string, record: string }
    peers: number
    validUntil: Date
  }>
  resolve(name: string, signal: AbortSignal, field?: string): Promise<{ cid: { toString(): string }, segments: string[], chain: string[] }>
  record(name: string, signal: AbortSignal, field?: string): Promise<{
    name: { text: string, peerId: { toString(): string } }
    facts: { value: string, sequence: bigint, validUntil: Date, ttlMs: number }
    source: 'published here' | 'broadcast' | 'dht'
  }>
}

export function registerNameRoutes (api: FastifyInstance, { names }: ApiRoutesOptions): void {
  api.get('/names/keys', {
    schema: { tags: ['names'], summary: 'This node\'s IPNS keys: `self` (its peer id) and the keys made with POST /names/keys', response: { 200: ipnsKeysSchema, ...apiErrorResponses } }
  }, async (): Promise<IpnsKeysAnswer> => ({ keys: await names.listKeys() }))

  api.get('/names/published', {
    schema: { tags: ['names'], summary: 'The names this node publishes, and keeps republishing', response: { 200: publishedNamesSchema, ...apiErrorResponses } }
  }, async (): Promise<PublishedNamesAnswer> => ({
    names: (await names.published()).map(entry => ({
      key: entry.key, name: entry.name, image: entry.image, value: entry.value, sequence: Number(entry.sequence),
      publishedAt: entry.publishedAt, signedAt: entry.signedAt, lifetimeSeconds: entry.lifetimeSeconds
    }))
  }))

  api.post<{ Body: CreateKeyBody }>('/names/keys', {
    schema: {
      tags: ['names'],
      summary: 'Make a named Ed25519 key to publish an IPNS name with (kept in the node\'s data directory, mode 0600)',
      body: createKeyBodySchema,
      response: { 201: ipnsKeySchema, ...apiErrorResponses }
    }
  }, async (req, reply) => await reply.code(201).send(await names.createKey(req.body.name)))

  api.post<{ Body: PublishBody }>('/names/publish', {
    schema: {
      tags: ['names'],
      summary: 'Point an IPNS name at an image: a signed record (one sequence above the last) broadcast to every member and put in the DHT, republished before it expires',
      body: publishBodySchema,
      response: { 200: publishedSchema, ...apiErrorResponses }
    }
  }, async (req, reply): Promise<PublishedAnswer> => {
    const { publication, peers, validUntil } = await names.publish(req.body, untilClientLeaves(reply))
    return {
      name: publication.name,
      key: publication.key,
      image: publication.image,
      value: publication.value,
      sequence: Number(publication.sequence),
      validUntil: validUntil.toISOString(),
      lifetimeSeconds: publication.lifetimeSeconds,
      ttlSeconds: publication.ttlSeconds,
      publishedAt: publication.publishedAt,
      peers
    }
  })

  api.get<{ Params: { name: string } }>('/names/resolve/:name', {
    schema: {
      tags: ['names'],
      summary: 'What an IPNS name (k51…, a peer id) or a domain (its DNSLink) points at now, hop by hop',
      params: nameParams,
      response: { 200: resolvedNameSchema, ...apiErrorResponses }
    }
  }, async (req, reply): Promise<ResolvedNameAnswer> => {
    const resolved = await names.resolve(req.params.name, untilClientLeaves(reply))
    const cid = resolved.cid.toString()
    return { name: req.params.name, path: `/ipfs/${[cid, ...resolved.segments].join('/')}`, cid, chain: resolved.chain }
  })

  api.get<{ Params: { name: string } }>('/names/records/:name', {
    schema: {
      tags: ['names'],
      summary: 'The record an IPNS name resolves through: value, sequence, validity, TTL, and the key that signed it',
      params: nameParams,
      response: { 200: nameRecordSchema, ...apiErrorResponses }
    }
  }, async (req, reply): Promise<NameRecordAnswer> => {
    const { name, facts, source } = await names.record(req.params.name, untilClientLeaves(reply))
    return {
      name: name.text,
      value: facts.value,
      sequence: Number(facts.sequence),
      validUntil: facts.validUntil.toISOString(),
      ttlSeconds: facts.ttlMs / 1000,
      signer: { peerId: name.peerId.toString(), name: name.text },
      source
    }
  })
}
