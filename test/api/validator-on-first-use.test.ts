// Route schemas compiled by the route's first request: nothing at start, once per route, and
// the API's refusals and defaults exactly as with schemas compiled up front.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import Fastify, { type FastifySchemaCompiler } from 'fastify'
import { AjvCompiler } from '@fastify/ajv-compiler'
import { validatorOnFirstUse } from '../../src/validator-on-first-use.ts'

const bodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: { type: 'string' }, replicas: { type: 'integer', default: 1 } }
}

describe('validatorOnFirstUse', () => {
  it('compiles a route\'s schema on its first request only, and refuses and fills in as Ajv does', async () => {
    const compiled: string[] = []
    const ajv = AjvCompiler()({}, { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } })
    const counting: FastifySchemaCompiler<unknown> = route => { compiled.push(`${route.method} ${route.url} ${route.httpPart}`); return ajv(route as Parameters<typeof ajv>[0]) }
    const app = Fastify()
    app.setValidatorCompiler(validatorOnFirstUse(counting))
    app.post('/a', { schema: { body: bodySchema } }, async req => req.body)
    app.post('/b', { schema: { body: bodySchema } }, async req => req.body)
    await app.ready()
    try {
      assert.deepEqual(compiled, [], 'nothing is compiled before a request')

      const refused = await app.inject({ method: 'POST', url: '/a', payload: { name: 'x', colour: 'red' } })
      assert.equal(refused.statusCode, 400)
      assert.match(refused.json<{ message: string }>().message, /must NOT have additional properties/)
      const filledIn = await app.inject({ method: 'POST', url: '/a', payload: { name: 'x' } })
      assert.equal(filledIn.statusCode, 200)
      assert.deepEqual(filledIn.json(), { name: 'x', replicas: 1 })
      const wrongType = await app.inject({ method: 'POST', url: '/a', payload: { name: 2 } })
      assert.equal(wrongType.statusCode, 400)
      assert.match(wrongType.json<{ message: string }>().message, /body\/name must be string/)
      assert.deepEqual(compiled, ['POST /a body'], 'compiled once, for the route asked only')
    } finally {
      await app.close()
    }
  })

  it('answers 500 for a schema that does not compile, and the server stays up', async () => {
    const ajv = AjvCompiler()({}, { customOptions: {} })
    const app = Fastify()
    app.setValidatorCompiler(validatorOnFirstUse(ajv))
    app.post('/broken', { schema: { body: { type: 'no-such-type' } } }, async () => 'never')
    app.get('/fine', async () => 'fine')
    await app.ready()
    try {
      assert.equal((await app.inject({ method: 'POST', url: '/broken', payload: {} })).statusCode, 500)
      assert.equal((await app.inject({ method: 'GET', url: '/fine' })).body, 'fine')
    } finally {
      await app.close()
    }
  })
})
