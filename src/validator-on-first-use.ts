import type { FastifySchemaCompiler } from 'fastify'

type Validator = ReturnType<FastifySchemaCompiler<unknown>>

/**
 * A fastify validator compiler that compiles a route's schema when the route first validates a
 * request, not when the route is added. Ajv generates and keeps a function per schema: compiling
 * every API route's at start held ~1 MiB of V8 heap on a node that is never managed through the
 * API (docs/architecture.md, "Memory"). A schema that does not compile is found by the route's
 * first request (a 500) instead of at start.
 */
export function validatorOnFirstUse<T> (compile: FastifySchemaCompiler<T>): FastifySchemaCompiler<T> {
  return route => {
    let compiled: Validator | undefined
    // fastify passes Ajv the object that holds the part (so Ajv may replace the part as a
    // whole) only to a function with a schemaEnv, as Ajv's own have; forwarded as it comes.
    const validate = Object.assign((data: unknown, parent?: unknown) => {
      compiled ??= compile(route)
      const result = (compiled as (data: unknown, parent?: unknown) => ReturnType<Validator>)(data, parent)
      // fastify reads a refusal's errors from the function it called.
      validate.errors = compiled.errors
      return result
    }, { errors: undefined as Validator['errors'], schemaEnv: true })
    return validate
  }
}
