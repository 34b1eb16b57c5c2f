// A test CA and a server certificate signed by it, made with openssl as an operator would.
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface TestCertificates {
  /** The CA's certificate, PEM. */
  caCert: string
  /** A directory with only `ca.crt` in it: what skopeo's --cert-dir and podman's --cert-dir read. */
  caDir: string
  /** The server's certificate (for 127.0.0.1 and localhost) and key, PEM files. */
  cert: string
  key: string
}

export async function makeCertificates (dir: string): Promise<TestCertificates> {
  const caDir = join(dir, 'ca')
  await mkdir(caDir, { recursive: true })
  const caKey = join(dir, 'ca.key')
  const caCert = join(caDir, 'ca.crt')
  const key = join(dir, 'node.key')
  const csr = join(dir, 'node.csr')
  const cert = join(dir, 'node.crt')
  const extensions = join(dir, 'node.ext')
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  await run('openssl', ['req', '-x509', ...ec, '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', '/CN=Shoal test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  await run('openssl', ['req', ...ec, '-keyout', key, '-out', csr, '-subj', '/CN=localhost'])
  await writeFile(extensions, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n')
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', extensions])
  return { caCert, caDir, cert, key }
}
