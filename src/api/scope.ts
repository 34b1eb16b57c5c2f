import { AjvCompiler } from '@fastify/ajv-compiler'
import type { FastifyInstance, FastifySchemaValidationError } from 'fastify'
import { validatorOnFirstUse } from '../validator-on-first-use.ts'
import { InvalidRequestError, UnsupportedMediaTypeError } from './errors.ts'

export const API_PREFIX = '/api/v1'
export const API_BODY_LIMIT_BYTES = 1024 * 1024

/**
 * Makes an encapsulated fastify instance (a plugin registered with a prefix) speak the
 * management API's conventions, for its own routes only: JSON request bodies in UTF-8, strict
 * validation, and refusals that name the field. Its errors are rendered by the server's one
 * error handler in the API's format (`api/errors.ts`), like every other error under /api/v1.
 */
export function configureApiScope (api: FastifyInstance): void {
  // The server's catch-all parser leaves bodies unread for the registry to stream; the API
  // takes JSON and nothing else (other media types get 415).
  api.removeAllContentTypeParsers()
  const parseJson = api.getDefaultJsonParser('error', 'error')
  api.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: API_BODY_LIMIT_BYTES }, (req, body, done) => {
    // JSON is UTF-8 (RFC 8259); a body declared in another charset would be read wrongly.
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1]
    if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
      done(new UnsupportedMediaTypeError(`the body must be JSON in UTF-8, not charset=${charset}`), undefined)
      return
    }
    // fastify's parser (it refuses __proto__ and constructor keys too), its refusals in the API's words.
    parseJson(req, body as string, (err, value) => {
      if (err === null) done(null, value)
      else if ((err as { code?: string }).code === 'FST_ERR_CTP_EMPTY_JSON_BODY') done(new InvalidRequestError('the body is empty: send a JSON object'), undefined)
      else done(new InvalidRequestError(`the body is not valid JSON: ${err.message}`), undefined)
    })
  })
  api.addContentTypeParser('*', (req, _body, done) => {
    done(new UnsupportedMediaTypeError(`the body must be application/json, not ${req.headers['content-type'] ?? 'of no declared type'}`), undefined)
  })

  // Strict: a field the schema does not name is refused, and a value of the wrong type is
  // refused rather than converted (fastify's default Ajv turns "2" into 2 and null into 0).
  // Each route's schema is compiled by its first request (memory a node that is never managed
  // through the API does not need).
  api.setValidatorCompiler(validatorOnFirstUse(strictValidator({}, { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false, verbose: true } })))
  // One refusal, in the words the domain uses for its own: "replicas must be a whole number, not \"2\"".
  api.setSchemaErrorFormatter((errors, dataVar) => new InvalidRequestError(describeSchemaError(firstError(errors), dataVar)))
}

const strictValidator = AjvCompiler()

/** What Ajv reports with `verbose`: the value and the schema that refused it. */
type VerboseError = FastifySchemaValidationError & { data?: unknown, schema?: unknown, parentSchema?: Record<string, unknown> }

/** The error to report: of alternatives (anyOf), the one about the whole value, not each branch's. */
function firstError (errors: FastifySchemaValidationError[]): VerboseError {
  return (errors.find(error => error.keyword === 'anyOf' || error.keyword === 'oneOf') ?? errors[0]) as VerboseError
}

/**
 * An Ajv error as the API's domain errors put it: the field by name, what it must be, and what
 * it was (`percentage must be a number, not null`; `unknown field "colour"`).
 */
export function describeSchemaError (error: VerboseError | undefined, dataVar: string): string {
  if (error === undefined) return `the ${dataVar} is invalid`
  const path = error.instancePath.split('/').slice(1).map(part => part.replaceAll('~1', '/').replaceAll('~0', '~')).join('.')
  const field = path === '' ? `the ${dataVar}` : path
  const within = path === '' ? '' : `${path}: `
  const was = 'data' in error ? `, not ${show(error.data)}` : ''
  const params = error.params as Record<string, unknown>
  switch (error.keyword) {
    case 'type':
      return `${field} must be ${describeTypes(params.type)}${was}`
    case 'anyOf':
    case 'oneOf':
      return `${field} must be ${describeAlternatives(error.schema)}${was}`
    case 'required':
      return `${within}missing field ${show(params.missingProperty)}`
    case 'additionalProperties': {
      const known = Object.keys((error.parentSchema?.properties as Record<string, unknown> | undefined) ?? {})
      return `${within}unknown field ${show(params.additionalProperty)}${known.length === 0 ? '' : ` (known: ${known.join(', ')})`}`
    }
    case 'enum':
      return `${field} must be one of ${(params.allowedValues as unknown[]).map(value => typeof value === 'string' ? value : show(value)).join(', ')}${was}`
    case 'minimum':
      return `${field} must be at least ${String(params.limit)}${was}`
    case 'maximum':
      return `${field} must be at most ${String(params.limit)}${was}`
    case 'minLength':
      return params.limit === 1 ? `${field} must not be empty` : `${field} must be at least ${String(params.limit)} characters long`
    case 'maxLength':
      return `${field} must be at most ${String(params.limit)} characters long`
    default:
      return `${field} ${error.message ?? 'is invalid'}${was}`
  }
}

const TYPE_NAMES: Record<string, string> = {
  integer: 'a whole number',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'an object',
  array: 'a list',
  null: 'null'
}

function describeTypes (types: unknown): string {
  const list = (Array.isArray(types) ? types : String(types).split(',')) as string[]
  return list.map(type => TYPE_NAMES[type] ?? type).join(' or ')
}

function describeAlternatives (schemas: unknown): string {
  if (!Array.isArray(schemas)) return 'one of the allowed forms'
  return schemas.map(schema => describeTypes((schema as { type?: unknown }).type ?? 'any value')).join(' or ')
}

function show (value: unknown): string {
  if (value === undefined) return 'nothing'
  const text = JSON.stringify(value)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}
