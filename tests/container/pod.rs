//! docker/kubernetes/agent-with-sidecar.yaml, run as a simulated pod: every container from
//! the image docker/Dockerfile builds, each in its own namespaces (`crate::runtime`), started
//! and probed in the order and the way the kubelet does, with what the manifest says read
//! from the manifest (commands, env, mounts, probes, security context), never retyped.
//!
//! - Volumes: one tmpfs per `emptyDir` (`medium: Memory`), made as the kubelet makes it
//!   (0777, then `fsGroup`: group-owned, setgid); the `secret` as the kubelet writes one (a
//!   tmpfs, a timestamped directory, the `..data` link, the key a link into it; mode
//!   `defaultMode` plus group read for `fsGroup`). Each container mounts exactly what its
//!   `volumeMounts` list, read-only where they say so.
//! - Processes run as `runAsUser`/`runAsGroup`, with `fsGroup` as a supplementary group; the
//!   command replaces the image's entrypoint; the environment is the image's `Env`, then the
//!   container's `env` (`fieldRef`s resolved against the pod's metadata), then the test
//!   cluster's own: where the platform and the GitHub host are, and their CA. The network
//!   namespace is shared, as a pod's is.
//! - The kubelet's order: the plain init container runs to completion; the native sidecar
//!   starts and must pass its startup probe (exec, as the container's user, every
//!   `periodSeconds`, at most `failureThreshold` times, each within `timeoutSeconds`) before
//!   the agent starts. Its liveness probe runs while the pod works. A dead sidecar is
//!   started again (a new container from the image, the same volumes) and probed again.
//!
//! The agent's work goes in through `kubectl exec`: git push and `gh api /user`, as the
//! agent's user, with the agent container's environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::runtime::{Container, Image, Mount, Run, agent_image_in_netns};
use crate::stack::{STALE, Stack, TTL, cached_expiry};
use crate::support::{assert_no_token_variable, report, root, run_ok, wait_for};

const NAME: &str = "pod::the_kubernetes_example_keeps_the_agents_git_and_gh_working";
const MANIFEST: &str = "docker/kubernetes/agent-with-sidecar.yaml";
/// The prometheus-operator's PodMonitor for that pod.
const POD_MONITOR: &str = "docker/kubernetes/agent-podmonitor.yaml";
/// Where the test cluster's CA is put in each container (its own copy: not a volume).
const CA: &str = "/usr/local/share/molecule-test/ca.pem";
/// The manifest's placeholder for the agent's own command; here an agent that waits while
/// the test works through `kubectl exec`.
const PLACEHOLDER: &str = "your-agent";
const IDLE_AGENT: &str = "sleep 3600";

/// The pod as the manifest describes it.
struct Pod {
    doc: Value,
}

impl Pod {
    fn load() -> Pod {
        let text = std::fs::read_to_string(root().join(MANIFEST)).unwrap();
        // Anchors and aliases (`&molecule-env`) are resolved while reading.
        let doc: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(doc["kind"], "Pod");
        Pod { doc }
    }

    fn spec(&self) -> &Value {
        &self.doc["spec"]
    }

    fn container(&self, list: &str, name: &str) -> &Value {
        self.spec()[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{MANIFEST} has no {list} entry named {name}"))
    }

    fn security(&self, key: &str) -> u32 {
        self.spec()["securityContext"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("securityContext.{key}")) as u32
    }

    /// `runAsUser`, `runAsGroup`, and `fsGroup` as the one supplementary group.
    fn user(&self) -> (u32, u32, Vec<u32>) {
        (
            self.security("runAsUser"),
            self.security("runAsGroup"),
            vec![self.security("fsGroup")],
        )
    }

    /// A container's `env`, `fieldRef`s resolved as the kubelet resolves them.
    fn env(&self, c: &Value) -> Vec<(String, String)> {
        c["env"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let name = e["name"].as_str().unwrap().to_owned();
                if let Some(v) = e["value"].as_str() {
                    return (name, v.to_owned());
                }
                let path = e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap();
                let value = match path {
                    "metadata.name" => self.doc["metadata"]["name"].as_str(),
                    _ => path
                        .strip_prefix("metadata.labels['")
                        .and_then(|l| l.strip_suffix("']"))
                        .and_then(|label| self.doc["metadata"]["labels"][label].as_str()),
                }
                .unwrap_or_else(|| panic!("{name}: fieldRef {path} resolves to nothing"));
                (name, value.to_owned())
            })
            .collect()
    }

    fn command(c: &Value) -> Vec<String> {
        c["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }
}

/// An exec probe, with the kubelet's defaults for what the manifest leaves out.
struct Probe {
    command: Vec<String>,
    period: Duration,
    timeout: Duration,
    failure_threshold: u64,
}

impl Probe {
    fn of(c: &Value, kind: &str) -> Probe {
        let p = &c[kind];
        let secs =
            |key: &str, default: u64| Duration::from_secs(p[key].as_u64().unwrap_or(default));
        Probe {
            command: p["exec"]["command"]
                .as_array()
                .unwrap_or_else(|| panic!("{} has no exec {kind}", c["name"]))
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            period: secs("periodSeconds", 10),
            timeout: secs("timeoutSeconds", 1),
            failure_threshold: p["failureThreshold"].as_u64().unwrap_or(3),
        }
    }

    /// One probe: in the container, as its user, with its environment, within the timeout
    /// (past it, a failure). Ok or the reason it failed.
    fn run(&self, container: &Container, uid: u32) -> Result<(), String> {
        let argv: Vec<&str> = self.command.iter().map(String::as_str).collect();
        match container.try_exec(&argv, Some(uid), &[], self.timeout) {
            None => Err(format!("timed out after {:?}", self.timeout)),
            Some(o) if o.status.success() => Ok(()),
            Some(o) => Err(format!(
                "exit {:?}: {}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).trim()
            )),
        }
    }

    /// The startup probe's loop: every `period` until it passes, at most `failure_threshold`
    /// times. Returns how many probes it took.
    fn until_started(&self, container: &Container, uid: u32) -> u64 {
        let mut last = String::new();
        for attempt in 1..=self.failure_threshold {
            match self.run(container, uid) {
                Ok(()) => return attempt,
                Err(why) => last = why,
            }
            std::thread::sleep(self.period);
        }
        panic!(
            "{}: the startup probe failed {} times (last: {last}); the kubelet would kill it\n{}",
            container.name,
            self.failure_threshold,
            container.log()
        );
    }
}

/// The pod's volumes: tmpfs mounts under the test's directory, unmounted when dropped.
struct Volumes {
    dir: PathBuf,
    mounted: Vec<PathBuf>,
}

impl Volumes {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn tmpfs(&mut self, name: &str, options: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(&p).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", options, "tmpfs"])
                .arg(&p),
            Duration::from_secs(10),
        );
        self.mounted.push(p.clone());
        p
    }

    /// Makes every volume of `pod`, as the kubelet does before any container starts.
    fn make(pod: &Pod, dir: &Path, bearer: &str) -> Volumes {
        let mut v = Volumes {
            dir: dir.to_path_buf(),
            mounted: Vec::new(),
        };
        let fs_group = pod.security("fsGroup");
        for vol in pod.spec()["volumes"].as_array().unwrap() {
            let name = vol["name"].as_str().unwrap();
            if let Some(empty) = vol.get("emptyDir") {
                assert_eq!(
                    empty["medium"], "Memory",
                    "{name}: only memory-backed emptyDirs"
                );
                let size = empty["sizeLimit"].as_str().unwrap().replace("Mi", "m");
                let p = v.tmpfs(name, &format!("size={size},mode=0777"));
                // fsGroup: the group owns the volume, and new files inherit it (setgid).
                std::os::unix::fs::chown(&p, Some(0), Some(fs_group)).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o2777)).unwrap();
            } else if let Some(secret) = vol.get("secret") {
                // YAML 1.1, as Kubernetes reads it: a leading 0 is octal (`0400`). The YAML
                // reader here keeps such a literal as a string.
                let mode = match &secret["defaultMode"] {
                    Value::Number(n) => n.as_u64().unwrap() as u32,
                    Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).unwrap(),
                    other => panic!("defaultMode {other}"),
                };
                assert_eq!(mode, 0o400);
                let p = v.tmpfs(name, "size=1m,mode=0755");
                std::os::unix::fs::chown(&p, Some(0), Some(fs_group)).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o2755)).unwrap();
                // The kubelet's atomic writer: a timestamped directory, `..data` pointing at
                // it, each key a link through `..data`.
                let stamp = p.join("..2026_12_01_00_00_00.000000001");
                std::fs::create_dir(&stamp).unwrap();
                let key = stamp.join(".auth_token");
                std::fs::write(&key, format!("{bearer}\n")).unwrap();
                std::os::unix::fs::chown(&key, Some(0), Some(fs_group)).unwrap();
                // defaultMode, plus group read for fsGroup (a read-only volume).
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode | 0o440))
                    .unwrap();
                std::os::unix::fs::symlink("..2026_12_01_00_00_00.000000001", p.join("..data"))
                    .unwrap();
                std::os::unix::fs::symlink("..data/.auth_token", p.join(".auth_token")).unwrap();
            } else {
                panic!("{name}: a volume kind the simulation does not know");
            }
        }
        v
    }

    /// The bind mounts a container's `volumeMounts` ask for.
    fn mounts(&self, c: &Value) -> Vec<Mount> {
        c["volumeMounts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|m| Mount {
                host: self.path(m["name"].as_str().unwrap()),
                path: m["mountPath"].as_str().unwrap().to_owned(),
                read_only: m["readOnly"].as_bool().unwrap_or(false),
            })
            .collect()
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        for p in self.mounted.iter().rev() {
            let _ = Command::new("umount").arg("--lazy").arg(p).status();
        }
    }
}

/// The pod's running containers and what starting one needs.
struct Kubelet<'a> {
    pod: &'a Pod,
    image: &'a Image,
    volumes: &'a Volumes,
    /// The test cluster's variables, after the manifest's.
    cluster_env: Vec<(String, String)>,
    ca_pem: PathBuf,
}

impl Kubelet<'_> {
    /// Creates and starts container `name` of `list` as `instance`, with `command`.
    fn start(&self, list: &str, name: &str, instance: &str, command: Vec<String>) -> Container {
        let spec = self.pod.container(list, name);
        assert_eq!(spec["image"], "molecule-agent:latest");
        let mut container = Container::create(self.image, instance);
        let ca = container.root.join(CA.trim_start_matches('/'));
        std::fs::create_dir_all(ca.parent().unwrap()).unwrap();
        std::fs::copy(&self.ca_pem, &ca).unwrap();
        std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut env = self.pod.env(spec);
        env.extend(self.cluster_env.iter().cloned());
        let env = self
            .image
            .config
            .env_with(self.pod.doc["metadata"]["name"].as_str().unwrap(), &env);
        container.start(Run {
            argv: command,
            env,
            user: Some(self.pod.user()),
            mounts: self.volumes.mounts(spec),
            stdin: None,
        });
        container
    }
}

impl Kubelet<'_> {
    /// Starts the native sidecar as `instance` and runs its startup probe until it passes;
    /// then waits for the login of gh it does after each new token, which the agent's gh
    /// uses. Returns the container, how many probes it took, and the seconds until ready.
    fn start_sidecar(
        &self,
        instance: &str,
        startup: &Probe,
        cache: &Path,
    ) -> (Container, u64, f64) {
        let started = Instant::now();
        let login_before = gh_login_at(cache);
        let spec = self.pod.container("initContainers", "gh-token-refresh");
        let sidecar = self.start(
            "initContainers",
            "gh-token-refresh",
            instance,
            Pod::command(spec),
        );
        sidecar.wait_pid1();
        let probes = startup.until_started(&sidecar, self.pod.user().0);
        let ready = started.elapsed().as_secs_f64();
        assert!(
            wait_for(Duration::from_secs(20), || {
                gh_login_at(cache).is_some_and(|at| Some(&at) != login_before.as_ref())
            }),
            "{instance} did not log gh in\n{}",
            sidecar.log()
        );
        (sidecar, probes, ready)
    }
}

/// What the sidecar's daemon last recorded of gh's login for `localhost`.
fn gh_login_at(cache: &Path) -> Option<String> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(cache.join("daemon.status.json")).ok()?).ok()?;
    let login = &v["hosts"]["localhost"]["gh_login"];
    (login["class"] == "ok").then(|| login["at"].as_str().map(str::to_owned))?
}

/// `kubectl exec agent -- …` as the pod's user.
struct Agent<'a> {
    container: &'a Container,
    uid: u32,
    pushes: u64,
}

impl Agent<'_> {
    /// Runs `script` in the agent's home (an exec starts in the image's working directory,
    /// `/`).
    fn sh(&self, script: &str) -> std::process::Output {
        self.container.exec(
            &["sh", "-c", &format!("cd \"$HOME\" && {script}")],
            Some(self.uid),
            &[],
            Duration::from_secs(60),
        )
    }

    fn push(&mut self) -> Result<(), String> {
        let n = self.pushes + 1;
        let out = self.sh(&format!(
            "cd work && echo {n} >> counter && git add counter && git commit -qm 'change {n}' && git push -q origin HEAD:main"
        ));
        if out.status.success() {
            self.pushes = n;
            Ok(())
        } else {
            // The commit stays; the next push carries it.
            self.pushes = n;
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn gh_user(&self) -> Result<String, String> {
        let out = self.sh("gh api --hostname localhost /user --jq .login");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Pushes and calls `gh api /user` without pause until `done`, each one succeeding, and
    /// runs the sidecar's liveness probe between rounds (its 60 s period, compressed like
    /// the hour). Returns the rounds done.
    fn work_until(
        &mut self,
        what: &str,
        timeout: Duration,
        liveness: (&Probe, &Container, u32),
        mut done: impl FnMut() -> bool,
    ) -> u64 {
        let end = Instant::now() + timeout;
        let mut rounds = 0;
        while !done() {
            assert!(Instant::now() < end, "{what}: not done within {timeout:?}");
            if let Err(e) = self.push() {
                panic!("{what}: git push failed: {e}\n{}", liveness.1.log());
            }
            assert_eq!(
                self.gh_user()
                    .map_err(|e| format!("{what}: gh api: {e}"))
                    .unwrap(),
                "molecule-bot\n"
            );
            let (probe, sidecar, uid) = liveness;
            if let Err(e) = probe.run(sidecar, uid) {
                panic!("{what}: the sidecar's liveness probe failed: {e}");
            }
            rounds += 1;
        }
        rounds
    }
}

#[test]
fn the_kubernetes_example_keeps_the_agents_git_and_gh_working() {
    let Some(image) = agent_image_in_netns(NAME) else {
        return;
    };
    let pod = Pod::load();
    let t = tempfile::tempdir().unwrap();
    let workspace = pod.doc["metadata"]["labels"]["molecule.dev/workspace"]
        .as_str()
        .expect("the pod names its workspace")
        .to_owned();
    let stack = Stack::start(t.path(), "bearer-pod", &workspace);
    let volumes = Volumes::make(&pod, &t.path().join("volumes"), &stack.bearer);
    let (uid, _, _) = pod.user();

    // The test cluster: the platform and the GitHub host are the stand-ins. WORKSPACE_ID
    // stays the manifest's (from the pod's label); the platform answers only that one.
    let sidecar_spec = pod.container("initContainers", "gh-token-refresh");
    assert!(
        pod.env(sidecar_spec)
            .iter()
            .any(|(k, _)| k == "PLATFORM_URL"),
        "the manifest sets PLATFORM_URL, which the test cluster replaces"
    );
    let cluster_env: Vec<(String, String)> = stack
        .deployment_env(Path::new(CA))
        .into_iter()
        .filter(|(k, _)| k != "WORKSPACE_ID")
        .collect();
    let kubelet = Kubelet {
        pod: &pod,
        image: &image,
        volumes: &volumes,
        cluster_env,
        ca_pem: stack.ca.ca_pem_path().to_path_buf(),
    };
    let cache_env = pod
        .env(sidecar_spec)
        .into_iter()
        .find(|(k, _)| k == "MOLECULE_TOKEN_CACHE_DIR")
        .unwrap()
        .1;
    // The cache as this test sees it: inside the token-cache volume.
    let cache = volumes
        .path("token-cache")
        .join(cache_env.strip_prefix("/cache/").unwrap());

    // 1. The plain init container, to completion.
    let init_spec = pod.container("initContainers", "token-cache-init");
    let mut init = kubelet.start(
        "initContainers",
        "token-cache-init",
        "pod-init",
        Pod::command(init_spec),
    );
    let init_exit = init
        .wait_exit(Duration::from_secs(30))
        .expect("the init container finishes");
    assert!(
        init_exit.success(),
        "token-cache-init: {init_exit}\n{}",
        init.log()
    );
    drop(init);

    // 2. The native sidecar, until its startup probe passes; only then the agent.
    assert_eq!(sidecar_spec["restartPolicy"], "Always", "a native sidecar");
    let startup = Probe::of(sidecar_spec, "startupProbe");
    let liveness = Probe::of(sidecar_spec, "livenessProbe");
    let first_mint = stack.platform.minted();
    let (sidecar, startup_probes, ready_secs) =
        kubelet.start_sidecar("pod-sidecar", &startup, &cache);

    // 3. The agent, its command as the manifest has it with the placeholder filled in.
    let agent_spec = pod.container("containers", "agent");
    let command: Vec<String> = Pod::command(agent_spec)
        .into_iter()
        .map(|a| {
            assert!(a.matches(PLACEHOLDER).count() <= 1);
            a.replace(PLACEHOLDER, IDLE_AGENT)
        })
        .collect();
    assert!(
        command.iter().any(|a| a.contains(IDLE_AGENT)),
        "{command:?}"
    );
    let agent_container = kubelet.start("containers", "agent", "pod-agent", command);
    agent_container.wait_pid1();
    assert!(
        wait_for(Duration::from_secs(20), || std::fs::read_to_string(
            agent_container.root.join("home/agent/.gitconfig")
        )
        .is_ok_and(|c| c.contains("helper"))),
        "the agent's git was not configured\n{}",
        agent_container.log()
    );
    let mut agent = Agent {
        container: &agent_container,
        uid,
        pushes: 0,
    };
    let clone = agent.sh("git clone -q https://localhost/acme/app.git work");
    assert!(
        clone.status.success(),
        "{}",
        String::from_utf8_lossy(&clone.stderr)
    );

    // What the agent does not have: a token variable, the platform bearer.
    assert_no_token_variable(
        &String::from_utf8_lossy(&agent.sh("env").stdout),
        "the agent",
    );
    assert_eq!(
        agent.sh("test -e /configs/.auth_token").status.code(),
        Some(1),
        "the platform bearer is the sidecar's alone"
    );

    // 4. Three rotations and more: every push and every gh call works.
    let rounds_before = agent.work_until(
        "with the sidecar",
        Duration::from_secs(90),
        (&liveness, &sidecar, uid),
        || stack.platform.minted() >= first_mint + 3,
    );
    let rotations_before = stack.platform.minted() - first_mint;

    // 5. The sidecar dies. The agent goes on with the cached token while it lasts; without
    //    the bearer it cannot mint, so once that token has expired git has nothing to send.
    // Killed just after a rotation, so that the token it leaves has a few seconds to serve.
    let fresh = |at: time::OffsetDateTime| {
        at - time::OffsetDateTime::now_utc() >= time::Duration::milliseconds(4500)
    };
    assert!(
        wait_for(TTL * 2, || cached_expiry(&cache)
            .is_some_and(|(_, at)| fresh(at))),
        "no fresh token to kill the sidecar after"
    );
    let mut sidecar = sidecar;
    sidecar.kill();
    let killed = Instant::now();
    let (_, expires_at) = cached_expiry(&cache).unwrap();
    // Each push starts with 2.5 s of the token's life left, ample to finish on it.
    let mut pushes_on_cache = 0;
    while time::OffsetDateTime::now_utc() + time::Duration::milliseconds(2500) < expires_at {
        agent
            .push()
            .unwrap_or_else(|e| panic!("a push on the cached token failed: {e}"));
        pushes_on_cache += 1;
    }
    let survived_secs = killed.elapsed().as_secs_f64();
    assert!(
        pushes_on_cache > 0,
        "the token was too close to its expiry to push on it"
    );
    assert!(wait_for(TTL, || time::OffsetDateTime::now_utc()
        > expires_at + time::Duration::seconds(1)));
    let after_expiry = agent
        .push()
        .expect_err("a push after the cached token expired, with no sidecar");
    assert!(
        after_expiry.contains("could not read Username for 'https://localhost'"),
        "{after_expiry}"
    );
    drop(sidecar);

    // 6. The kubelet starts the sidecar again: a new container, the same volumes.
    let restart_mint = stack.platform.minted();
    let (sidecar, restart_probes, restart_secs) =
        kubelet.start_sidecar("pod-sidecar-restarted", &startup, &cache);
    let rounds_after = agent.work_until(
        "after the restart",
        Duration::from_secs(60),
        (&liveness, &sidecar, uid),
        || stack.platform.minted() >= restart_mint + 2,
    );
    let rotations_after = stack.platform.minted() - restart_mint;
    for log in [sidecar.log(), agent_container.log()] {
        assert!(
            !log.contains(STALE) && !log.contains("bearer-pod"),
            "a secret reached a log"
        );
    }

    report(
        "pod",
        &format!(
            "pod ({MANIFEST}, simulated: {} containers from the image, uid {uid}, a tmpfs per emptyDir, the bearer only in the sidecar): \
             init token-cache-init exit 0; sidecar ready after {startup_probes} startup probe(s), {ready_secs:.1}s; \
             {rotations_before} rotations: {rounds_before} rounds of git push + gh api /user from the agent, 0 failures, liveness probe passing each round; \
             sidecar killed: {pushes_on_cache} pushes on the cached token for {survived_secs:.1}s, then, once it had expired, git push failed as documented; \
             sidecar restarted: ready after {restart_probes} startup probe(s), {restart_secs:.1}s; {rotations_after} more rotations: {rounds_after} rounds of push + gh api, 0 failures",
            ["initContainers", "containers"]
                .iter()
                .map(|l| pod.spec()[l].as_array().map_or(0, Vec::len))
                .sum::<usize>()
        ),
    );
}

/// The PodMonitor scrapes what the pod serves: its selector matches the pod's labels, and each
/// endpoint names a container port whose number is the one that container's
/// `MOLECULE_METRICS_LISTEN` binds on every address, at the listener's path.
#[test]
fn the_pod_monitor_scrapes_the_sidecars_metrics_listener() {
    let pod = Pod::load();
    let text = std::fs::read_to_string(root().join(POD_MONITOR)).unwrap();
    let monitor: Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(monitor["kind"], "PodMonitor");
    let spec = &monitor["spec"];
    let labels = &pod.doc["metadata"]["labels"];
    let selector = &spec["selector"];
    for (key, value) in selector["matchLabels"].as_object().into_iter().flatten() {
        assert_eq!(&labels[key], value, "matchLabels {key}");
    }
    for expr in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap();
        match expr["operator"].as_str().unwrap() {
            "Exists" => assert!(labels.get(key).is_some(), "the pod has no label {key}"),
            "In" => assert!(
                expr["values"].as_array().unwrap().contains(&labels[key]),
                "label {key}"
            ),
            other => panic!("{POD_MONITOR}: operator {other} is not checked here"),
        }
    }
    for label in spec["podTargetLabels"].as_array().into_iter().flatten() {
        let label = label.as_str().unwrap();
        assert!(
            labels.get(label).is_some(),
            "podTargetLabels: the pod has no {label}"
        );
    }
    let endpoints = spec["podMetricsEndpoints"].as_array().unwrap();
    assert!(!endpoints.is_empty());
    for endpoint in endpoints {
        let name = endpoint["port"].as_str().unwrap();
        let (container, port) = ["initContainers", "containers"]
            .iter()
            .flat_map(|list| pod.spec()[list].as_array().unwrap())
            .find_map(|c| {
                let port = c["ports"].as_array()?.iter().find(|p| p["name"] == name)?;
                Some((c, port))
            })
            .unwrap_or_else(|| panic!("{MANIFEST}: no container has a port named {name}"));
        assert_eq!(
            container["name"], "gh-token-refresh",
            "the sidecar serves /metrics"
        );
        let listen = pod
            .env(container)
            .into_iter()
            .find_map(|(k, v)| (k == "MOLECULE_METRICS_LISTEN").then_some(v))
            .expect("the sidecar sets MOLECULE_METRICS_LISTEN");
        assert_eq!(
            listen,
            format!("0.0.0.0:{}", port["containerPort"]),
            "the listener binds the scraped port on the pod's IP"
        );
        assert_eq!(endpoint["path"], "/metrics");
    }
}
