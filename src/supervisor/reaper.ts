// Reaping orphans. The app's descendants that outlive their parent are reparented to cloister (we are
// PID 1, or a child subreaper); when they exit they become zombies only cloister can collect.
//
// Node collects its own children itself (libuv calls waitpid(pid) for each child it spawned, and only
// then emits 'exit'). Reaping one of those here would steal its exit status: libuv would get ECHILD and
// the 'exit' event would never come. So every child cloister spawns in the enclave is registered where
// it is spawned (registerNodeChild; today only the app, src/supervisor/app.ts) until its 'exit', and the
// reaper only touches zombies that are our children and not registered: exactly the reparented orphans.
// A new spawn() in the enclave process must register its child too.
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const nodeChildren = new Set<number>();

/** Keeps the reaper off a child Node itself waits for, until its 'exit'. Call right after spawn(). */
export function registerNodeChild(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined) return; // spawn failed: there is no process to protect
  nodeChildren.add(pid);
  child.once('exit', () => nodeChildren.delete(pid));
}

export function isNodeChild(pid: number): boolean {
  return nodeChildren.has(pid);
}

interface ProcStat {
  pid: number;
  state: string;
  ppid: number;
  pgrp: number;
}

/** Parse /proc/<pid>/stat. comm may hold spaces and parentheses, so split after the last ')'. */
export function parseProcStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(')');
  if (close === -1) return null;
  const pid = Number.parseInt(text, 10);
  const fields = text.slice(close + 2).split(' ');
  const ppid = Number(fields[1]);
  const pgrp = Number(fields[2]);
  if (!Number.isInteger(pid) || !fields[0] || !Number.isInteger(ppid) || !Number.isInteger(pgrp)) return null;
  return { pid, state: fields[0], ppid, pgrp };
}

function readProcs(procDir = '/proc'): ProcStat[] {
  const out: ProcStat[] = [];
  let names: string[];
  try {
    names = readdirSync(procDir);
  } catch {
    return out;
  }
  for (const name of names) {
    if (name.charCodeAt(0) < 0x30 || name.charCodeAt(0) > 0x39) continue;
    try {
      const st = parseProcStat(readFileSync(`${procDir}/${name}/stat`, 'latin1'));
      if (st) out.push(st);
    } catch {
      // exited and reaped between readdir and read
    }
  }
  return out;
}

/**
 * Processes still in process group `pgid` that descend from us. Once the app (the group's leader) is
 * gone its pid may be reused, and `kill(-pgid)` could then hit an unrelated group; checking ancestry
 * keeps cloister's final SIGKILL to what the app left behind.
 */
export function ourGroupMembers(pgid: number, self = process.pid, procDir = '/proc'): number[] {
  const procs = readProcs(procDir);
  const parent = new Map(procs.map((p) => [p.pid, p.ppid]));
  const ours = (pid: number): boolean => {
    for (let p = parent.get(pid), hops = 0; p !== undefined && hops < 4096; p = parent.get(p), hops++) {
      if (p === self) return true;
      if (p <= 1) return false;
    }
    return false;
  };
  return procs.filter((p) => p.pgrp === pgid && p.state !== 'Z' && ours(p.pid)).map((p) => p.pid);
}

/** Our children that are zombies, read from /proc. */
export function findZombieChildren(parent = process.pid, procDir = '/proc'): number[] {
  return readProcs(procDir)
    .filter((st) => st.ppid === parent && st.state === 'Z')
    .map((st) => st.pid);
}

export interface ReaperOptions {
  /** waitpid(pid, WNOHANG): the raw wait status, or null if the pid was not ready. */
  reapZombie: (pid: number) => number | null;
  /** Called for each orphan collected (for a debug log line). */
  onReaped?: (pid: number, status: number) => void;
  /** Slow sweep in case a SIGCHLD was coalesced or missed. */
  intervalMs?: number;
}

export class Reaper {
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private readonly onSigchld = () => this.schedule();

  constructor(private readonly opts: ReaperOptions) {}

  start(): void {
    process.on('SIGCHLD', this.onSigchld);
    this.timer = setInterval(() => this.sweep(), this.opts.intervalMs ?? 5000);
    this.timer.unref();
    this.schedule();
  }

  stop(): void {
    process.off('SIGCHLD', this.onSigchld);
    if (this.timer) clearInterval(this.timer);
  }

  /** Sweep soon, once, however many SIGCHLDs arrive meanwhile. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // setImmediate: libuv handles the same SIGCHLD for Node's own children first.
    setImmediate(() => {
      this.scheduled = false;
      this.sweep();
    });
  }

  /** Collect every reparented zombie; returns how many were reaped. */
  sweep(): number {
    let reaped = 0;
    for (const pid of findZombieChildren()) {
      if (isNodeChild(pid)) continue;
      let status: number | null;
      try {
        status = this.opts.reapZombie(pid);
      } catch {
        continue; // ECHILD: someone else got it first
      }
      if (status !== null) {
        reaped++;
        this.opts.onReaped?.(pid, status);
      }
    }
    return reaped;
  }
}
