#!/usr/bin/env bash
# Checks the alerting pack: deploy/prometheus (rules, PrometheusRule, promtool unit tests)
# and deploy/grafana (dashboard, ConfigMap generator).
#
# Installs what it needs when missing: Debian's prometheus package (for promtool) and, into
# ${ZOMBIE_TEST_CACHE:-/var/cache/zombie-daemon-tests}/node, pinned npm packages for the
# dashboard type check and the PrometheusRule schema. Both installs are skipped when present.
# Ends with one line "N passed, M failed"; exits 1 when anything failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

NODE_DIR="${ZOMBIE_TEST_CACHE:-/var/cache/zombie-daemon-tests}/node"
# Pinned so that a new release cannot change the verdict on unchanged files.
NPM_PKGS=(
  @grafana/schema@13.2.3
  typescript@7.0.2
  @kubernetes-models/prometheus-operator@6.0.0
  js-yaml@5.5.0
)

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

setup_failed() {
  echo "setup failed: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  # The package lists are refreshed only when an install fails without it.
  as_root apt-get install -y --no-install-recommends "$@" >"$TMP/apt.log" 2>&1 ||
    { as_root apt-get update >>"$TMP/apt.log" 2>&1 &&
      as_root apt-get install -y --no-install-recommends "$@" >>"$TMP/apt.log" 2>&1; } ||
    { cat "$TMP/apt.log" >&2; setup_failed "apt-get install $* failed (log above)"; }
}

if ! command -v promtool >/dev/null; then
  echo "setup: installing Debian package prometheus (for promtool)"
  apt_install prometheus
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup: installing Debian packages nodejs npm"
  apt_install nodejs npm
fi

mkdir -p "$NODE_DIR" 2>/dev/null || NODE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/zombie-daemon-tests/node"
mkdir -p "$NODE_DIR"
# shellcheck disable=SC2016 # ${...} below is JavaScript, not shell.
if ! node -e '
  const [dir, ...specs] = process.argv.slice(1);
  for (const spec of specs) {
    const at = spec.lastIndexOf("@");
    const pkg = `${dir}/node_modules/${spec.slice(0, at)}/package.json`;
    try { if (require(pkg).version !== spec.slice(at + 1)) process.exit(1); } catch { process.exit(1); }
  }
  require("fs").accessSync(`${dir}/node_modules/.bin/tsc`);
' "$NODE_DIR" "${NPM_PKGS[@]}" 2>/dev/null; then
  echo "setup: npm install ${NPM_PKGS[*]} into $NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error "${NPM_PKGS[@]}" >"$TMP/npm.log" 2>&1 ||
    { cat "$TMP/npm.log" >&2; setup_failed "npm install failed (log above)"; }
fi
# Scripts in $TMP resolve packages through this link.
ln -s "$NODE_DIR/node_modules" "$TMP/node_modules"

PASSED=0
FAILED=0
# check NAME COMMAND...: runs COMMAND, counts it, shows its output only when it fails.
check() {
  local name=$1 out
  shift
  printf '%-72s ' "$name"
  if out="$("$@" 2>&1)"; then
    echo ok
    PASSED=$((PASSED + 1))
  else
    echo FAILED
    printf '%s\n' "$out" | sed 's/^/    /'
    FAILED=$((FAILED + 1))
  fi
}

# Structural checks on the YAML and JSON, in one node script; its first argument names the check.
cat >"$TMP/pack.mjs" <<'EOF'
import fs from 'node:fs';
import assert from 'node:assert/strict';
import { load } from 'js-yaml';

const yaml = (p) => load(fs.readFileSync(p, 'utf8'));
const rules = yaml('deploy/prometheus/rules.yaml');
const alerts = rules.groups.flatMap((g) => g.rules).filter((r) => r.alert);
const recorded = new Set(rules.groups.flatMap((g) => g.rules).map((r) => r.record).filter(Boolean));
// The daemon's metric contract (plus Prometheus' own `up`).
const contract = new Set([
  'zombie_processes', 'zombie_oldest_age_seconds', 'zombie_processes_by_cause',
  'zombie_process_exits_total', 'zombie_reaped_total', 'zombie_reap_latency_seconds_bucket',
  'zombie_reap_latency_seconds_sum', 'zombie_reap_latency_seconds_count',
  'zombie_ebpf_events_lost_total', 'zombie_resyncs_total', 'zombie_ebpf_programs_attached',
  'zombie_build_info', 'zombie_node_pids', 'zombie_node_pid_limit', 'zombie_pod_pids',
  'zombie_pod_pids_limit', 'zombie_container_pids', 'zombie_container_pids_limit', 'up',
  'zombie_pod_pids_max_events_total', 'zombie_container_pids_max_events_total',
  'zombie_pid_namespace_teardown_stuck', 'zombie_injected_init_containers',
  'zombie_processes_by_origin', 'zombie_exec_session_zombies_total',
]);
// Series of kube-state-metrics that the rules read (ZombieDaemonPodsNotReady).
const ksm = new Set(['kube_daemonset_status_desired_number_scheduled', 'kube_daemonset_status_number_ready']);
const RUNBOOK = 'https://github.com/zombie-daemon/zombie-daemon/blob/main/deploy/prometheus/runbook.md#';
const ANNOTATIONS = ['description', 'runbook_url', 'summary'];
// GitHub's anchor for a Markdown heading.
const slug = (h) => h.trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-');
// Every series an expression reads must be in the contract or recorded by rules.yaml.
function unknownNames(expr) {
  const names = expr.match(/\b(?:[a-z_]+:[a-z0-9_:]+|zombie_[a-z0-9_]+|kube_[a-z0-9_]+|up)(?=\s*[{[)\s]|$)/g) ?? [];
  return names.filter((n) => !contract.has(n) && !recorded.has(n) && !ksm.has(n));
}

const checks = {
  'rules-contract'() {
    for (const r of rules.groups.flatMap((g) => g.rules)) {
      assert.deepEqual(unknownNames(r.expr), [], `${r.alert ?? r.record} reads unknown series`);
    }
    for (const a of alerts) {
      assert.ok(['warning', 'critical'].includes(a.labels?.severity), `${a.alert}: severity label`);
      assert.deepEqual(Object.keys(a.annotations).sort(), ANNOTATIONS, `${a.alert}: annotations`);
    }
  },
  // monitoring-mixins conventions: runbook_url into the repository's runbook, one alert name
  // for the severity tiers of one condition (so that critical inhibits warning), a `for:`
  // on every alert, and the selectors the Helm chart rewrites written exactly so.
  'alert-conventions'() {
    const runbook = fs.readFileSync('deploy/prometheus/runbook.md', 'utf8');
    const anchors = new Set(runbook.split('\n').filter((l) => /^#+ /.test(l)).map((l) => slug(l.replace(/^#+ /, ''))));
    const byName = new Map();
    for (const a of alerts) {
      const url = a.annotations.runbook_url;
      assert.ok(url.startsWith(RUNBOOK), `${a.alert}: runbook_url ${url} is not into deploy/prometheus/runbook.md`);
      assert.equal(url.slice(RUNBOOK.length), a.alert.toLowerCase(), `${a.alert}: runbook_url anchor`);
      assert.ok(anchors.has(url.slice(RUNBOOK.length)), `${a.alert}: runbook.md has no section ${url.slice(RUNBOOK.length)}`);
      assert.ok(a.for, `${a.alert} (${a.labels.severity}) has no for:`);
      assert.ok(!/\b(?:High|Critical|Warning)$/.test(a.alert) || a.alert === 'ZombieProcessesHigh',
        `${a.alert}: a severity in the name; share one name across tiers`);
      byName.set(a.alert, [...(byName.get(a.alert) ?? []), a]);
    }
    for (const [name, tiers] of byName) {
      const sev = tiers.map((t) => t.labels.severity);
      assert.equal(new Set(sev).size, sev.length, `${name}: two rules with severity ${sev}`);
    }
    for (const r of rules.groups.flatMap((g) => g.rules)) {
      for (const sel of r.expr.match(/\bjob=~?"[^"]*"/g) ?? []) {
        assert.ok(['job="zombie-daemon"', 'job="kube-state-metrics"'].includes(sel),
          `${r.alert ?? r.record}: selector ${sel} (the chart replaces only job="zombie-daemon" and job="kube-state-metrics")`);
      }
      if (/kube_daemonset_/.test(r.expr)) {
        assert.equal((r.expr.match(/namespace="zombie-daemon",daemonset="zombie-daemon"/g) ?? []).length,
          (r.expr.match(/kube_daemonset_/g) ?? []).length, `${r.alert}: every kube-state-metrics selector names the DaemonSet`);
      }
    }
  },
  'every-alert-tested'() {
    const dir = 'deploy/prometheus/tests';
    const cases = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => yaml(`${dir}/${f}`).tests.flatMap((t) => t.alert_rule_test ?? []));
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert);
      assert.ok(mine.some((c) => (c.exp_alerts ?? []).some((e) => e.exp_labels?.severity === a.labels.severity)),
        `${a.alert} (${a.labels.severity}): no test where it fires`);
      assert.ok(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${a.alert}: no test where it stays silent`);
      for (const c of mine) for (const e of c.exp_alerts ?? []) {
        assert.deepEqual(Object.keys(e.exp_annotations ?? {}).sort(), ANNOTATIONS,
          `${a.alert} at ${c.eval_time}: assert all annotations`);
      }
    }
  },
  'prometheusrule-groups'() {
    const pr = yaml('deploy/prometheus/prometheusrule.yaml');
    assert.equal(pr.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(pr.kind, 'PrometheusRule');
    assert.deepEqual(pr.metadata, { name: 'zombie-daemon', namespace: 'zombie-daemon', labels: { 'app.kubernetes.io/name': 'zombie-daemon' } });
    assert.deepEqual(pr.spec.groups, rules.groups, 'spec.groups differs from rules.yaml groups');
  },
  async 'prometheusrule-schema'() {
    // Imported here only: loading the models takes most of a second.
    const { PrometheusRule } = await import('@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1');
    new PrometheusRule(yaml('deploy/prometheus/prometheusrule.yaml')).validate();
  },
  'kustomizations'() {
    const p = yaml('deploy/prometheus/kustomization.yaml');
    assert.deepEqual(p.resources, ['prometheusrule.yaml']);
    const g = yaml('deploy/grafana/kustomization.yaml');
    assert.equal(g.namespace, 'zombie-daemon', 'the dashboard ConfigMap has no namespace');
    assert.deepEqual(g.generatorOptions, { disableNameSuffixHash: true, labels: { grafana_dashboard: '1' } });
    assert.deepEqual(g.configMapGenerator, [{ name: 'zombie-daemon-dashboard', files: ['zombie-daemon.json'] }]);
  },
  'dashboard-wiring'() {
    const d = JSON.parse(fs.readFileSync('deploy/grafana/zombie-daemon.json', 'utf8'));
    const vars = Object.fromEntries(d.templating.list.map((v) => [v.name, v]));
    assert.equal(vars.datasource?.type, 'datasource');
    assert.equal(vars.datasource?.query, 'prometheus');
    // Node (instance) and cluster filters come first; each variable's query follows the ones
    // before it.
    assert.deepEqual(d.templating.list.map((v) => v.name), ['datasource', 'cluster', 'instance', 'namespace', 'pod']);
    for (const [name, after] of [['instance', ['cluster']], ['namespace', ['cluster', 'instance']],
      ['pod', ['cluster', 'instance', 'namespace']]]) {
      for (const a of after) assert.ok(vars[name].query.includes(`${a}=~"$${a}"`), `${name} variable ignores $${a}`);
    }
    for (const name of ['cluster', 'instance', 'namespace', 'pod']) {
      assert.equal(vars[name]?.type, 'query', `${name} variable`);
      assert.match(String(vars[name].query), /^label_values\(/, `${name} variable query`);
      assert.equal(vars[name].datasource?.uid, '${datasource}', `${name} variable datasource`);
    }
    const ids = new Set();
    for (const p of d.panels) {
      assert.ok(!ids.has(p.id), `duplicate panel id ${p.id}`);
      ids.add(p.id);
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${datasource}', `panel "${p.title}" datasource`);
      assert.ok(p.targets?.length > 0, `panel "${p.title}" has no query`);
      for (const t of p.targets) {
        assert.equal(t.datasource?.uid, '${datasource}', `panel "${p.title}" query ${t.refId} datasource`);
        assert.deepEqual(unknownNames(t.expr), [], `panel "${p.title}" reads unknown series`);
        // Every query follows the filters its series carry: all of them cluster and node
        // (but the cluster-wide latency), the pod series also namespace and pod.
        const filters = (t.expr.match(/\b(\w+)=~"\$(\w+)"/g) ?? []);
        const series = t.expr.match(/\b(?:[a-z_]+:[a-z0-9_:]+|zombie_[a-z0-9_]+|up)(?=\s*[{[)\s]|$)/g) ?? [];
        const clusterWide = series.every((n) => n === 'zombie:reap_latency_seconds:quantile_rate5m');
        const want = ['cluster=~"$cluster"', ...(clusterWide ? [] : ['instance=~"$instance"'])];
        if (series.some((n) => /^(namespace_pod|zombie_processes|zombie_oldest|zombie_pod_|zombie_container_)/.test(n))) {
          want.push('namespace=~"$namespace"', 'pod=~"$pod"');
        }
        for (const f of want) assert.ok(filters.includes(f), `panel "${p.title}" query ${t.refId} ignores ${f}: ${t.expr}`);
      }
    }
  },
  // Writes the dashboard and mutated copies as TypeScript for tsc (see below).
  'write-ts'(out) {
    const json = fs.readFileSync('deploy/grafana/zombie-daemon.json', 'utf8');
    // Dashboard JSON holds a string enum's value ("absolute"), which TypeScript does not
    // accept for the enum type itself: check against Dashboard with each string enum
    // replaced by the union of its values, everything else (excess keys too) unchanged.
    const head = `import type { Dashboard } from '@grafana/schema';
type Json<T> = T extends string ? \`\${T}\` : T extends readonly (infer U)[] ? Json<U>[]
  : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
export const d: Json<Dashboard> = `;
    fs.writeFileSync(`${out}/dashboard.ts`, `${head}${json};\n`);
    const panel = (d) => d.panels.find((p) => p.type !== 'row' && p.fieldConfig?.defaults?.thresholds);
    const mutations = {
      'bad-key': (d) => { d.templating.list[1].includeAl = true; },
      'bad-type': (d) => { panel(d).gridPos.h = '8'; },
      'bad-enum': (d) => { panel(d).fieldConfig.defaults.thresholds.mode = 'absolut'; },
    };
    for (const [name, mutate] of Object.entries(mutations)) {
      const d = JSON.parse(json);
      mutate(d);
      fs.writeFileSync(`${out}/${name}.ts`, `${head}${JSON.stringify(d, null, 1)};\n`);
    }
  },
};
const name = process.argv[2];
try {
  if (!checks[name]) throw new Error(`unknown check ${name}`);
  await checks[name](...process.argv.slice(3));
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
EOF

pack() { node "$TMP/pack.mjs" "$@"; }

echo "== Prometheus rules (promtool $(promtool --version 2>&1 | awk 'NR==1 {print $3}'))"
check "promtool check rules deploy/prometheus/rules.yaml" promtool check rules deploy/prometheus/rules.yaml
check "promtool test rules deploy/prometheus/tests/*.yaml" promtool test rules deploy/prometheus/tests/*.yaml
check "rules read only contract metrics or recorded series; alerts annotated" pack rules-contract
check "every alert has a firing and a silent unit test" pack every-alert-tested
check "alert conventions: runbook_url sections, shared tier names, for:, selectors" pack alert-conventions
check "generated files are current (cargo xtask gen --check)" cargo xtask gen --check
check "prometheusrule.yaml spec.groups == rules.yaml groups" pack prometheusrule-groups
check "PrometheusRule validates (@kubernetes-models/prometheus-operator)" pack prometheusrule-schema
check "kustomizations list the rule object and the dashboard ConfigMap" pack kustomizations

echo "== Grafana dashboard"
check "dashboard: datasource variable in every panel and query; known series" pack dashboard-wiring
pack write-ts "$TMP" || echo "could not write the dashboard as TypeScript (the tsc checks below fail)"
# One tsc run over the dashboard and its broken copies; its errors are sorted per file below.
(cd "$TMP" && "$NODE_DIR/node_modules/.bin/tsc" --noEmit --strict dashboard.ts bad-*.ts >tsc.log 2>&1) || true
tsc_clean() {
  # Only the broken copies may have errors (lines of other files, or tsc's own failures, fail).
  ! grep -v -e '^bad-[a-z-]*\.ts(' -e '^ ' "$TMP/tsc.log" || return 1
  grep -q '^bad-' "$TMP/tsc.log" || { echo "tsc reported nothing at all"; cat "$TMP/tsc.log"; return 1; }
}
tsc_rejects() { grep -q "^$1\.ts(" "$TMP/tsc.log" || { echo "tsc accepted $1.ts"; return 1; }; }
check "tsc --strict: zombie-daemon.json is a @grafana/schema Dashboard" tsc_clean
check "tsc --strict rejects a misspelled key (negative control)" tsc_rejects bad-key
check "tsc --strict rejects a wrong field type (negative control)" tsc_rejects bad-type
check "tsc --strict rejects an unknown enum value (negative control)" tsc_rejects bad-enum

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
