// nitro-cli, the way enclaver-run drives it (docs/reference/enclaver.md, "Host side"): run-enclave prints a
// JSON object (after some progress lines) naming EnclaveID and EnclaveCID; terminate-enclave --enclave-id ID
// stops it. The command is configurable (--nitro-cli) so tests run a fake one.
import { execFile } from 'node:child_process';

export interface RunEnclaveOptions {
  nitroCli: string;
  eifPath: string;
  cpuCount: number;
  memoryMb: number;
  debugMode: boolean;
  /** Extra environment for the nitro-cli process. */
  env?: NodeJS.ProcessEnv;
}

export interface EnclaveInfo {
  EnclaveName?: string;
  EnclaveID: string;
  ProcessID?: number;
  EnclaveCID: number;
}

const SUPPORT_HINT = /If you open a support ticket, please provide the error log found at "([^"]+)"/;

function exec(
  cmd: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: env ?? process.env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const detail = stderr.trim() || stdout.trim() || err.message;
        const hint = SUPPORT_HINT.exec(stderr)?.[1];
        reject(
          new Error(`${cmd} ${args[0]} failed: ${detail}${hint ? ` (nitro-cli error log: ${hint})` : ''}`),
        );
        return;
      }
      resolve({ stdout, stderr });
    });
  });
}

/** The JSON value nitro-cli prints last, skipping the progress lines before it. */
export function parseNitroJson(stdout: string): unknown {
  const lines = stdout.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trimStart();
    if (!l.startsWith('{') && !l.startsWith('[')) continue;
    try {
      return JSON.parse(lines.slice(i).join('\n'));
    } catch {
      // A progress line that happens to start with a brace: keep looking.
    }
  }
  throw new Error(`no JSON in nitro-cli output: ${stdout.slice(0, 500)}`);
}

export async function runEnclave(o: RunEnclaveOptions): Promise<EnclaveInfo> {
  if (o.cpuCount < 1) throw new Error('at least 1 CPU is required');
  if (o.memoryMb < 64) throw new Error('at least 64MiB of memory is required');
  const args = [
    'run-enclave',
    '--cpu-count',
    String(o.cpuCount),
    '--memory',
    String(o.memoryMb),
    '--eif-path',
    o.eifPath,
  ];
  if (o.debugMode) args.push('--debug-mode');
  const { stdout } = await exec(o.nitroCli, args, o.env);
  const info = parseNitroJson(stdout) as Partial<EnclaveInfo>;
  if (typeof info.EnclaveID !== 'string' || !Number.isInteger(info.EnclaveCID)) {
    // Older/odd outputs: ask describe-enclaves for the CID.
    if (typeof info.EnclaveID === 'string') {
      const all = parseNitroJson(
        (await exec(o.nitroCli, ['describe-enclaves'], o.env)).stdout,
      ) as EnclaveInfo[];
      const me = all.find((e) => e.EnclaveID === info.EnclaveID);
      if (me && Number.isInteger(me.EnclaveCID)) return { ...me, ...info, EnclaveCID: me.EnclaveCID };
    }
    throw new Error(`nitro-cli run-enclave printed no EnclaveID/EnclaveCID: ${stdout.slice(0, 500)}`);
  }
  return info as EnclaveInfo;
}

export async function terminateEnclave(nitroCli: string, id: string, env?: NodeJS.ProcessEnv): Promise<void> {
  await exec(nitroCli, ['terminate-enclave', '--enclave-id', id], env);
}
