import type { BootResult } from '../machine/boot.js';

/** The short human summary of a boot. */
export function renderBoot(r: BootResult): string {
  const lines: string[] = [];
  const secs = r.elapsedMs / 1000;
  lines.push(`kernel       ${r.kernel.path} (${r.kernel.kind})`);
  if (r.kernel.version) lines.push(`version      ${r.kernel.version}`);
  lines.push(`entry        ${r.entry} (${r.milestones[0]?.name ?? 'startup_64'})`);
  lines.push('milestones');
  for (const m of r.milestones) {
    lines.push(`  ${m.name.padEnd(15)} ${m.rip.padEnd(12)} ${(m.symbol || '').padEnd(24)} instruction ${m.instruction}`);
  }
  if (r.kernelEntry) lines.push(`kernel entry ${r.kernelEntry}`);
  if (r.coco) lines.push(`guest        ${r.coco.mode}${r.coco.mode === 'snp' ? ` at VMPL${r.coco.vmpl}${r.coco.svsm ? ' under an SVSM' : ''}` : ''}, SEV_STATUS ${r.coco.sevStatus}, ${r.events.length} host events`);
  lines.push(`verdict      ${r.verdict}: ${r.reason}`);
  if (r.termination) lines.push(`termination  set ${r.termination.set} code ${r.termination.code}: ${r.termination.name}${r.termination.detail ? ` (detail ${r.termination.detail})` : ''}`);
  for (const f of r.findings) lines.push(`finding      ${f}`);
  for (const u of r.uninitializedReads.slice(0, 10)) {
    const where = [u.section !== u.symbol ? u.section : null, u.address].filter((x) => x).join(', ');
    const times = u.count > 1 ? ` (${u.count} times)` : '';
    lines.push(`uninit read  ${u.symbol || u.address} (${u.size} byte${u.size > 1 ? 's' : ''} at ${where}) read by ${u.reader || u.rip} at instruction ${u.instruction}${times} before anything wrote it; it held ${u.value}`);
  }
  if (r.uninitializedReads.length > 10) lines.push(`             ... ${r.uninitializedReads.length - 10} more uninitialized reads (see --json)`);
  if (r.gap) lines.push(`             bytes ${r.gap.bytes}  ${r.gap.disassembly}`);
  lines.push(`instructions ${r.instructions} in ${secs.toFixed(2)} s (${(r.instructions / Math.max(secs, 1e-3) / 1e6).toFixed(1)} MIPS), trace hash ${r.traceHash}`);
  if (r.console) {
    lines.push('console');
    for (const l of r.console.replace(/\n$/, '').split('\n')) lines.push(`  | ${l}`);
  } else {
    lines.push('console      (nothing printed)');
  }
  if (r.trace.length && r.events.length) {
    lines.push('host events (last 20)');
    for (const e of r.events.slice(-20)) lines.push(`  ${e.kind.padEnd(13)} ${e.rip.padEnd(12)} ${(e.symbol || '').padEnd(24)} ${e.detail} -> ${e.result}`);
  }
  if (r.trace.length) {
    lines.push(`last ${r.trace.length} instructions`);
    for (const t of r.trace) lines.push(`  ${t.rip.padEnd(12)} ${(t.symbol || '').padEnd(28)} ${t.bytes.padEnd(24)} ${t.disassembly}`);
  }
  return lines.join('\n');
}
