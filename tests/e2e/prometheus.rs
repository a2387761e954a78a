//! A real Prometheus server (Debian's) scraping the real daemon: the shipped zombie alert goes
//! pending, fires with the pod's labels, and resolves once the zombies are reaped.

use std::{
    collections::BTreeMap,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

use crate::{
    harness::{Daemon, free_port, poll},
    runc::RuncContainer,
};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const SECOND: Duration = Duration::from_secs(1);
/// The alert under test: zombies per (pod, cause).
const ALERT: &str = "ZombieProcessesHigh";

/// A running Prometheus with its own config, rules and TSDB in a temp dir; killed and its dir
/// removed on drop (also when the test panics).
pub struct PrometheusServer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `127.0.0.1:<target_port>` as job `zombie-daemon` every
    /// second and evaluating `rules` (a rule file's text) every second; returns once it is
    /// ready to answer queries.
    pub fn start(target_port: u16, rules: &str) -> Self {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install Debian's prometheus (cargo xtask setup --test)"
        );
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "zombie-e2e-prometheus-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("rules.yaml"), rules).unwrap();
        // scrape_timeout may not exceed the interval; rule_files are relative to this file.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - rules.yaml\n\
             scrape_configs:\n  - job_name: zombie-daemon\n    static_configs:\n      \
             - targets: ['127.0.0.1:{target_port}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let mut cmd = Command::new(PROMETHEUS);
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg("--storage.tsdb.retention.time=1h")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        // SAFETY: prctl with integer arguments is async-signal-safe. If the test process is
        // killed outright (no Drop), Prometheus goes with the thread that started it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {PROMETHEUS}: {e}"));
        let mut p = PrometheusServer { child, port, dir };
        let start = Instant::now();
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("prometheus exited with {status}:\n{}", p.log_tail());
            }
            if let Ok((200, _)) = p.get("/-/ready") {
                break;
            }
            if start.elapsed() > 15 * SECOND {
                panic!("prometheus was not ready within 15 s:\n{}", p.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        crate::harness::http_get(self.port, path)
    }

    /// `data` of an HTTP API answer; panics with Prometheus's error otherwise.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        let url = format!("/api/v1/{path}?{}", query.join("&"));
        let (status, body) = self.get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {url}: {status} {body:?}: {e}"));
        assert_eq!(v["status"], "success", "GET {url}: {status} {body}");
        v["data"].clone()
    }

    /// An instant query's vector.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", promql)]);
        data["result"].as_array().cloned().unwrap_or_default()
    }

    pub fn query_range(&self, promql: &str, start: f64, end: f64, step: f64) -> Value {
        self.api(
            "query_range",
            &[
                ("query", promql),
                ("start", &format!("{start:.3}")),
                ("end", &format!("{end:.3}")),
                ("step", &step.to_string()),
            ],
        )
    }

    /// Active (pending or firing) alerts named `name`.
    pub fn alerts(&self, name: &str) -> Vec<Value> {
        let data = self.api("alerts", &[]);
        data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect()
    }

    /// The loaded rule named `name` (alert or recording), as `/api/v1/rules` shows it.
    pub fn rule(&self, name: &str) -> Option<Value> {
        let data = self.api("rules", &[]);
        data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == name)
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > 5 * SECOND {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::thread::panicking() {
            eprintln!("--- prometheus log (tail) ---\n{}", self.log_tail());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters stay as they are).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// deploy/prometheus/rules.yaml as shipped, except that `ZombieProcessesHigh` trips on this
/// test's 2 zombies within seconds: its `for:` becomes 2s and its per-pod threshold 1.
///
/// The threshold is a literal in the expression (`namespace_pod:zombie_processes:sum > 5`,
/// PromQL has no parameters), so it is substituted in the text; everything else — the
/// recording rules it reads, the `and ignoring (cause)` join, labels, annotations — is what
/// ships. A threshold of 1 (not 0) still checks that both zombies are counted. The file is
/// edited as text, not parsed, so that it stays byte for byte what ships apart from these two
/// values; Prometheus validates the result when it loads it, and the test checks the loaded
/// rule.
pub fn rules_for_test() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/rules.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let begin = text
        .find(&format!("- alert: {ALERT}\n"))
        .unwrap_or_else(|| panic!("no alert {ALERT} in {}", path.display()));
    let end = text[begin + 1..]
        .find("- alert: ")
        .map_or(text.len(), |i| begin + 1 + i);
    let mut block = text[begin..end].to_string();

    let threshold = "namespace_pod:zombie_processes:sum > ";
    let at = block
        .find(threshold)
        .unwrap_or_else(|| panic!("{ALERT} no longer compares `{threshold}N`: update this test"))
        + threshold.len();
    let digits = block[at..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(block.len() - at);
    assert!(digits > 0, "{ALERT}: no number after `{threshold}`");
    block.replace_range(at..at + digits, "1");

    let for_line = block
        .lines()
        .find(|l| l.trim_start().starts_with("for: "))
        .unwrap_or_else(|| panic!("{ALERT} has no `for:`: update this test"));
    let indent = &for_line[..for_line.len() - for_line.trim_start().len()];
    block = block.replacen(for_line, &format!("{indent}for: 2s"), 1);

    format!("{}{block}{}", &text[..begin], &text[end..])
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Label `key` of a Prometheus text-format line (`name{a="x",b="y"} v`), if present.
fn label<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let labels = line.split_once('{')?.1.split_once('}')?.0;
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}

/// The query_range results behind the README's dashboard picture (tests/e2e/plot_dashboard.py).
const PLOT_QUERIES: &[(&str, &str)] = &[
    ("zombies_per_pod", "namespace_pod:zombie_processes:sum"),
    ("zombie_processes", "zombie_processes"),
    (
        "oldest_zombie_per_pod",
        "namespace_pod:zombie_oldest_age_seconds:max",
    ),
    ("zombie_oldest_age_seconds", "zombie_oldest_age_seconds"),
    ("zombies_by_cause", "zombie_processes_by_cause > 0"),
    ("node_pids", "zombie_node_pids"),
    ("node_pid_limit", "zombie_node_pid_limit"),
    ("pod_pids", "zombie_pod_pids"),
    ("pod_pids_limit", "zombie_pod_pids_limit"),
    ("reaped_total", "zombie_reaped_total"),
    ("alerts", "ALERTS{alertname=\"ZombieProcessesHigh\"}"),
];

/// The test's Prometheus data, for the README picture: written when ZOMBIE_PLOT_DIR is set.
fn dump_for_plot(
    dir: &Path,
    prom: &PrometheusServer,
    window: (f64, f64),
    context: Value,
) -> PathBuf {
    // Whole milliseconds, as Prometheus keeps them: the plot rebuilds the time grid from these.
    let (start, end) = (
        (window.0 * 1e3).round() / 1e3,
        (window.1 * 1e3).round() / 1e3,
    );
    let mut queries = serde_json::Map::new();
    for (name, promql) in PLOT_QUERIES {
        let data = prom.query_range(promql, start, end, 0.5);
        queries.insert(
            name.to_string(),
            json!({ "query": promql, "result": data["result"] }),
        );
    }
    let doc = json!({
        "start": start,
        "end": end,
        "step": 0.5,
        "context": context,
        "queries": queries,
    });
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("prometheus-e2e.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

/// One runc container in a kubepods cgroup whose PID 1 (`sleep`, after `sh` execs it) never
/// reaps: 2 zombies. Prometheus scrapes the daemon; the shipped alert, with its `for:` and
/// threshold shortened (see [`rules_for_test`]), must go pending, fire with the pod's labels,
/// and resolve once the container and its zombies are gone.
#[test]
fn the_zombie_alert_fires_with_the_pod_labels_and_resolves_in_a_real_prometheus() {
    let t0 = Instant::now();
    let d = Daemon::start();
    let rules = rules_for_test();
    let prom = PrometheusServer::start(d.port, &rules);
    let instance = format!("127.0.0.1:{}", d.port);
    let plot_dir = std::env::var_os("ZOMBIE_PLOT_DIR").map(PathBuf::from);
    let mut events = BTreeMap::new();
    check_the_rule_is_substituted(&prom);

    // The zombies appear in a running scrape, as they would on a node.
    poll("the first scrape of the daemon", 15 * SECOND, || {
        let up = prom.query("up{job=\"zombie-daemon\"}");
        (up.first()?["value"][1] == "1").then_some(())
    });
    let window_start = unix_now();
    if plot_dir.is_some() {
        // A lead-in before the zombies, for the picture.
        std::thread::sleep(2 * SECOND);
    }

    let uid = "0d6a3f5e-2b7c-4e19-9a84-5f1e3c2b7d60";
    let id = "c3".repeat(32);
    let cgroup = format!("/kubepods/besteffort/pod{uid}/{id}");
    let c = RuncContainer::start(
        "zombie-e2e-prometheus",
        &cgroup,
        &["/bin/sh", "-c", "sleep 0.2 & sleep 0.2 & exec sleep 3600"],
    );
    events.insert("container_started", unix_now());
    poll("2 zombies in the container", 3 * SECOND, || {
        (d.children_of(c.pid).len() == 2).then_some(())
    });
    let cause = the_daemons_cause(&d, uid, &id);
    check_scraped(&prom, uid, &id, &instance, &mut events);
    let firing = wait_firing(&prom, uid, &mut events);
    check_the_firing_alert(&firing, &instance, uid, &cause);

    if plot_dir.is_some() {
        // A plateau worth seeing in the picture.
        std::thread::sleep(8 * SECOND);
    }
    remove_and_wait_resolved(c, &d, &prom, uid, &mut events);

    if let Some(dir) = plot_dir {
        // And the tail after the reap.
        std::thread::sleep(4 * SECOND);
        let context = json!({
            "pod": uid,
            "container": id,
            "cause": cause,
            "instance": instance,
            "alert": ALERT,
            "events": events,
        });
        let path = dump_for_plot(&dir, &prom, (window_start, unix_now()), context);
        eprintln!("wrote {}", path.display());
    }
    eprintln!(
        "pending {:.1} s after the container started, firing {:.1} s after pending, resolved \
         {:.1} s after the container was removed; test took {:.1?}",
        events["pending"] - events["container_started"],
        events["firing"] - events["pending"],
        events["resolved"] - events["container_removed"],
        t0.elapsed()
    );
}

/// When each step of the alert's life was seen (unix seconds), by name.
type Events = BTreeMap<&'static str, f64>;

/// Prometheus runs the rule as substituted.
fn check_the_rule_is_substituted(prom: &PrometheusServer) {
    let rule = prom.rule(ALERT).expect("the alert is loaded");
    assert_eq!(rule["duration"], 2, "{rule}");
    assert!(
        rule["query"]
            .as_str()
            .unwrap()
            .contains("namespace_pod:zombie_processes:sum > 1"),
        "{rule}"
    );
}

/// The truth, from the daemon: without CRI names, namespace is "", pod the UID, container
/// the ID; one cause for both zombies, which is returned.
fn the_daemons_cause(d: &Daemon, uid: &str, id: &str) -> String {
    let (_, metrics) = d.get("/metrics").unwrap();
    let series = format!("zombie_processes{{container=\"{id}\",namespace=\"\",pod=\"{uid}\"}} 2");
    assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    let causes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("zombie_processes_by_cause{") && l.ends_with(" 2"))
        .filter(|l| label(l, "pod") == Some(uid))
        .filter_map(|l| label(l, "cause"))
        .collect();
    assert_eq!(causes.len(), 1, "one cause for both zombies: {metrics}");
    causes[0].to_string()
}

/// Prometheus scrapes the same series. An empty label value is no label in Prometheus, so
/// `namespace` is absent there rather than "".
fn check_scraped(
    prom: &PrometheusServer,
    uid: &str,
    id: &str,
    instance: &str,
    events: &mut Events,
) {
    let scraped = poll(
        "the pod's zombie_processes in Prometheus",
        3 * SECOND,
        || {
            let v = prom.query(&format!("zombie_processes{{pod=\"{uid}\"}}"));
            (!v.is_empty()).then_some(v)
        },
    );
    events.insert("zombies_scraped", unix_now());
    assert_eq!(scraped.len(), 1, "{scraped:?}");
    let m = &scraped[0]["metric"];
    assert_eq!(m["container"].as_str(), Some(id), "{m}");
    assert_eq!(m["job"], "zombie-daemon", "{m}");
    assert_eq!(m["instance"].as_str(), Some(instance), "{m}");
    assert!(m.get("namespace").is_none(), "{m}");
    assert_eq!(scraped[0]["value"][1], "2");
}

/// The pod's alert goes pending, then fires, and is the only one for the pod; returns it
/// firing.
fn wait_firing(prom: &PrometheusServer, uid: &str, events: &mut Events) -> Value {
    let ours = |a: &Value| a["labels"]["pod"] == uid;
    let pending = poll("the alert to go pending", 10 * SECOND, || {
        prom.alerts(ALERT).into_iter().find(ours)
    });
    events.insert("pending", unix_now());
    assert_eq!(pending["state"], "pending", "went active as {pending}");
    let firing = poll("the alert to fire", 10 * SECOND, || {
        prom.alerts(ALERT)
            .into_iter()
            .find(|a| ours(a) && a["state"] == "firing")
    });
    events.insert("firing", unix_now());
    let active: Vec<Value> = prom.alerts(ALERT).into_iter().filter(ours).collect();
    assert_eq!(active.len(), 1, "one alert per (pod, cause): {active:?}");
    firing
}

/// The pod's labels; `container` is aggregated away (alerts are per pod and cause). The
/// value and the annotations.
fn check_the_firing_alert(firing: &Value, instance: &str, uid: &str, cause: &str) {
    let labels = &firing["labels"];
    let expected = json!({
        "alertname": ALERT,
        "severity": "warning",
        "job": "zombie-daemon",
        "instance": instance,
        "pod": uid,
        "cause": cause,
    });
    assert_eq!(labels, &expected, "{firing}");
    assert_eq!(
        firing["value"].as_str().map(|v| v.parse::<f64>()),
        Some(Ok(2.0))
    );
    let summary = firing["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains(uid), "{summary}");
    assert!(
        firing["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains(&format!("cause {cause}")),
        "{firing}"
    );
    assert!(
        firing["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("/deploy/prometheus/runbook.md#zombieprocesseshigh"),
        "{firing}"
    );
}

/// Removing the container tears down its PID namespace: the kernel reaps the zombies, the
/// alert resolves and the pod's series goes stale.
fn remove_and_wait_resolved(
    c: RuncContainer,
    d: &Daemon,
    prom: &PrometheusServer,
    uid: &str,
    events: &mut Events,
) {
    let ours = |a: &Value| a["labels"]["pod"] == uid;
    let pid1 = c.pid;
    drop(c);
    events.insert("container_removed", unix_now());
    poll("the daemon to see the reaps", 10 * SECOND, || {
        d.children_of(pid1).is_empty().then_some(())
    });
    poll("the alert to resolve", 10 * SECOND, || {
        (!prom.alerts(ALERT).iter().any(ours)).then_some(())
    });
    events.insert("resolved", unix_now());
    assert!(
        prom.query(&format!("zombie_processes{{pod=\"{uid}\"}}"))
            .is_empty(),
        "the pod's series went stale"
    );
}
