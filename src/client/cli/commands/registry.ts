/**
 * Registry commands, all offline (no Temporal needed):
 *
 * - `integration-agent validate FILE [--json]`: every problem (exit 1) or a one-line summary (exit 0).
 * - `integration-agent plan FILE [--credential ID] [--json]`: topological batches, rollback order, critical path.
 * - `integration-agent graph FILE [--format mermaid|dot] [--credential ID]`: a picture for GitHub (Mermaid) or Graphviz.
 */
import { Option, type Command } from 'commander';
import { loadRegistryFile } from '../../../activities/registry-file';
import { formatDuration } from '../../../domain/duration';
import { planRegistry, type RegistryPlan } from '../../../domain/plan';
import { credentialServiceIds, type Registry } from '../../../domain/registry';
import { RegistryValidationError, formatProblem } from '../../../domain/registry-parse';
import { CliError, emit } from '../context';
import { formatTable } from '../table';

/** One-line summary of a valid registry. */
export function summarizeRegistry(registry: Registry, plan: RegistryPlan = planRegistry(registry)): string {
  const n = (k: number, one: string, many: string) => `${k} ${k === 1 ? one : many}`;
  return (
    `${registry.source}: valid, ${n(registry.services.length, 'service', 'services')}, ` +
    `${n(registry.credentials.length, 'credential', 'credentials')}, ${n(plan.batches.length, 'batch', 'batches')}, version ${registry.versionHash}`
  );
}

/** The human form of a plan: batches, rollback order, critical path. */
export function formatPlan(registry: Registry, plan: RegistryPlan): string {
  const scope = plan.credentialId === undefined ? `all ${plan.serviceIds.length} services` : `credential ${plan.credentialId} (${plan.serviceIds.length} services: issuer and consumers)`;
  const lines = [`plan for ${scope}; registry ${registry.source} version ${plan.registryVersion}`];
  lines.push(formatTable(['BATCH', 'SERVICES'], plan.batches.map((b, i) => [String(i + 1), b.join(', ')])));
  lines.push(`rollback order: ${plan.rollback.map((b) => b.join(', ')).join(' | ') || '(nothing)'}`);
  const cp = plan.criticalPath;
  lines.push(`critical path: ${cp.path.join(' -> ') || '(empty)'} (${formatDuration(cp.durationMs)}): the lower bound on a parallel run's wall time`);
  lines.push(`batched estimate: ${formatDuration(plan.batchedDurationMs)} (each batch waits for its slowest service)`);
  return lines.join('\n');
}

/**
 * Mermaid flowchart (renders in GitHub markdown). Arrows point from a service
 * to what it depends on; `highlight` ids get the `scope` class.
 */
export function toMermaid(registry: Registry, highlight: readonly string[] = []): string {
  const key = new Map(registry.services.map((s, i) => [s.id, `s${i}`]));
  const lines = ['flowchart LR', '  %% arrows point from a service to what it depends on'];
  for (const s of registry.services) lines.push(`  ${key.get(s.id)}["${s.id}<br/><small>${s.type}</small>"]`);
  for (const s of registry.services) for (const d of s.dependsOn) if (key.has(d)) lines.push(`  ${key.get(s.id)} --> ${key.get(d)}`);
  const marked = highlight.filter((id) => key.has(id)).map((id) => key.get(id)!);
  if (marked.length > 0) {
    lines.push('  classDef scope fill:#fde68a,stroke:#b45309,stroke-width:2px');
    lines.push(`  class ${marked.join(',')} scope`);
  }
  return lines.join('\n');
}

/** Graphviz DOT (`dot -Tsvg`). Arrows point from a service to what it depends on; `highlight` ids are filled. */
export function toDot(registry: Registry, highlight: readonly string[] = []): string {
  const q = (s: string) => JSON.stringify(s); // DOT strings share JSON's quoting of " and \
  const marked = new Set(highlight);
  const lines = ['digraph registry {', '  rankdir=LR;', '  node [shape=box, style=rounded, fontname="Helvetica"];'];
  for (const s of registry.services) {
    const style = marked.has(s.id) ? ', style="rounded,filled", fillcolor="#fde68a"' : '';
    lines.push(`  ${q(s.id)} [label=${q(`${s.id}\n${s.type}`)}${style}];`);
  }
  const ids = new Set(registry.services.map((s) => s.id));
  for (const s of registry.services) for (const d of s.dependsOn) if (ids.has(d)) lines.push(`  ${q(s.id)} -> ${q(d)};`);
  lines.push('}');
  return lines.join('\n');
}

function planOrExplain(registry: Registry, credentialId: string | undefined): RegistryPlan {
  if (credentialId !== undefined && !registry.credentials.some((c) => c.id === credentialId)) {
    const known = registry.credentials.map((c) => c.id).join(', ') || 'none';
    throw new CliError(`unknown credential "${credentialId}" in ${registry.source} (known: ${known})`);
  }
  return planRegistry(registry, credentialId === undefined ? {} : { credentialId });
}

export function register(program: Command): void {
  program
    .command('validate')
    .description('check a registry file: print every problem (exit 1) or a one-line summary (exit 0)')
    .argument('<file>', 'registry file (YAML or JSON)')
    .option('--json', 'print the result as JSON')
    .action((file: string, opts: { json?: boolean }) => {
      let registry: Registry;
      try {
        registry = loadRegistryFile(file);
      } catch (err) {
        if (!(err instanceof RegistryValidationError) || !opts.json) throw err;
        emit(opts, { ok: false, source: file, problems: err.problems.map((p) => ({ ...p, text: formatProblem(p, file) })) }, () => '');
        process.exitCode = 1;
        return;
      }
      const plan = planRegistry(registry);
      emit(
        opts,
        {
          ok: true,
          source: file,
          version: registry.versionHash,
          services: registry.services.length,
          credentials: registry.credentials.length,
          batches: plan.batches.length,
        },
        () => summarizeRegistry(registry, plan),
      );
    });

  program
    .command('plan')
    .description('print the dependency-ordered batches, rollback order and critical path (all services, or one credential)')
    .argument('<file>', 'registry file (YAML or JSON)')
    .option('--credential <id>', "plan only this credential's issuer and consumers")
    .option('--json', 'print the plan as JSON')
    .action((file: string, opts: { json?: boolean; credential?: string }) => {
      const registry = loadRegistryFile(file);
      const plan = planOrExplain(registry, opts.credential);
      emit(opts, plan, () => formatPlan(registry, plan));
    });

  program
    .command('graph')
    .description('print the dependency graph as Mermaid (renders in GitHub) or Graphviz DOT')
    .argument('<file>', 'registry file (YAML or JSON)')
    .addOption(new Option('--format <format>', 'output format').choices(['mermaid', 'dot']).default('mermaid'))
    .option('--credential <id>', "highlight this credential's issuer and consumers")
    .option('--json', 'print { format, text } as JSON')
    .action((file: string, opts: { json?: boolean; format: 'mermaid' | 'dot'; credential?: string }) => {
      const registry = loadRegistryFile(file);
      let highlight: string[] = [];
      if (opts.credential !== undefined) {
        planOrExplain(registry, opts.credential);
        highlight = credentialServiceIds(registry, opts.credential);
      }
      const text = opts.format === 'dot' ? toDot(registry, highlight) : toMermaid(registry, highlight);
      emit(opts, { format: opts.format, text }, () => text);
    });
}

