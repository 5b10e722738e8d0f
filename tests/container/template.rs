//! Wiring a template image (README.md, "Wiring a template image"): docker/Dockerfile's
//! `binaries` stage, built on its own, is the two binaries and the two scripts in
//! /usr/local/bin and nothing else; another image, an agent template's, takes them with one
//! `COPY --from` and runs `ENTRYPOINT ["molecule-entrypoint"]`, without tini. Run as `docker
//! run -i` runs it: "an hour, compressed" with the template's git and gh, the installed
//! `molecule-entrypoint` as PID 1 (until it execs the agent) and the installed
//! `molecule-respawn` keeping the daemon.

use std::time::Duration;

use crate::image::start_agent;
use crate::release::{BINARIES, SCRIPTS, dist};
use crate::runtime::{Build, Image, build_image, image_files, image_in_netns};
use crate::stack::Stack;
use crate::support::{assert_no_token_variable, report, root};

const NAME: &str = "template::the_binaries_stage_wires_a_template_image";

/// An agent template's image: Debian with git, gh and a non-root `agent` user, as the
/// templates' own Dockerfiles have, plus the README's two lines (`COPY --from`, `ENTRYPOINT`).
const TEMPLATE: &str = r#"FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git gh ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/bash agent
COPY --from=BINARIES /usr/local/bin/ /usr/local/bin/
ENTRYPOINT ["molecule-entrypoint"]
CMD ["bash"]
"#;

fn template_dockerfile(binaries: &str) -> String {
    TEMPLATE.replace("BINARIES", binaries)
}

/// The binaries stage (its files checked), then the template image built with it.
fn template_image(tag: &str) -> Image {
    let prebuilt = dist().prebuilt_dir();
    let binaries = build_image(&Build {
        dockerfile: &root().join("docker/Dockerfile"),
        context: &root(),
        stage: Some("binaries"),
        args: &[
            ("MOLECULE_BINARIES", "prebuilt"),
            ("MOLECULE_PREBUILT_DIR", &prebuilt),
        ],
        tag: &format!("molecule-credential-test:{tag}"),
    });
    let mut want: Vec<(String, u32)> = BINARIES
        .iter()
        .chain(&SCRIPTS)
        .map(|f| (format!("usr/local/bin/{f}"), 0o755))
        .collect();
    want.sort();
    assert_eq!(
        image_files(&binaries),
        want,
        "the binaries stage holds the two binaries and the two scripts, and nothing else"
    );
    let context = tempfile::tempdir().unwrap();
    let dockerfile = context.path().join("Dockerfile");
    std::fs::write(&dockerfile, template_dockerfile(&binaries.name)).unwrap();
    let mut template = build_image(&Build {
        dockerfile: &dockerfile,
        context: context.path(),
        stage: None,
        args: &[],
        tag: &format!("molecule-template-test:{tag}"),
    });
    template.build_report = format!(
        "{}\n{}\nthe template:\n{}",
        binaries.build_report,
        template.build_report,
        template_dockerfile("molecule-credential").trim_end()
    );
    // The template holds its own copy: the binaries image goes now.
    drop(binaries);
    template
}

#[test]
fn the_binaries_stage_wires_a_template_image() {
    let Some(image) = image_in_netns(NAME, template_image) else {
        return;
    };
    assert_eq!(image.config.entrypoint, ["molecule-entrypoint"]);
    let t = tempfile::tempdir().unwrap();
    let stack = Stack::start(t.path(), "bearer-template", "ws-template");
    let agent = start_agent(&image, &stack, t.path(), "template");
    let rotations = agent.work_through_the_hour(&stack, "in the template image");

    // What kept the daemon running is the installed respawn loop, started by the installed
    // entrypoint; no process of the agent holds a token variable.
    let mut respawn = 0;
    for pid in agent.container.processes(agent.pid1) {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("/usr/local/bin/molecule-respawn gh-token-refresh") {
            respawn += 1;
        }
        if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) {
            assert_no_token_variable(
                &String::from_utf8_lossy(&environ).replace('\0', "\n"),
                &format!("process {pid} ({})", cmdline.trim()),
            );
        }
    }
    assert_eq!(respawn, 1, "one molecule-respawn runs the daemon");
    agent.results.stop();
    let log = || agent.container.log();
    assert!(
        crate::support::wait_for(Duration::from_secs(30), || agent
            .results
            .text()
            .contains("done ")),
        "the agent did not finish its loop: {}",
        log()
    );
    agent
        .results
        .assert_no_failure("at the end of the hour", &log);
    assert_eq!(
        agent.results.agent_env(),
        "GH_TOKEN=unset GITHUB_TOKEN=unset"
    );
    assert!(
        log().contains("entrypoint: gh-token-refresh running under molecule-respawn"),
        "{}",
        log()
    );
    report(
        "template",
        &format!(
            "{}\nin the template image, PID 1 molecule-entrypoint (no tini), root half then agent: an hour, compressed in {:.0}s: {}",
            image.build_report,
            agent.started.elapsed().as_secs_f64(),
            agent.results.tally(rotations)
        ),
    );
}
